//! Behind real nginx (issue 15): Debian's nginx, started on loopback by each test with the
//! configuration files of `examples/deploy/` (nginx-http.conf, nginx-stream.conf; their
//! addresses replaced by the test's: tests/util/balancers.rs), in front of the `rest` and `echo`
//! examples, talked to by curl, Python's `requests` and a steady load of Rust clients.
//!
//! - nginx's http proxy in front of `rest`: the API answers through it, over keep-alive
//!   connections to the server; `GET /whoami` answers nginx's address there, and the client's
//!   through nginx's stream proxy with `proxy_protocol on;`.
//! - Three `echo` servers on 127.0.0.2-4 behind one nginx upstream under a steady load: the load
//!   spreads over them; one stopped gracefully (SIGTERM) costs no request; one killed (SIGKILL)
//!   costs at most the requests in flight on it.
//!
//! Needs `nginx`, `libnginx-mod-stream`, curl and Python's requests (scripts/test installs
//! them).

#[path = "util/balancers.rs"]
mod balancers;
mod example;
mod util;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use balancers::{finished, http_get, sample, Balancer, Config, LineLoad, Tally};
use example::{python3, run, Example, CLIENT_DEADLINE};
use nix::sys::signal::Signal;

/// The address the test's clients connect from: neither nginx's nor the server's.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// `curl -sS` with `args` from [`CLIENT`], bounded: its stdout, or a failure with its stderr.
fn curl(args: &[&str]) -> String {
    let out = run(
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--interface",
                &CLIENT.to_string(),
            ])
            .args(args),
        CLIENT_DEADLINE,
    );
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET /whoami` with curl from [`CLIENT`] through `front`: the `client` of the JSON answer,
/// and curl's own address.
fn whoami(front: SocketAddr) -> (String, String) {
    let text = curl(&[
        "-w",
        "\n%{local_ip}:%{local_port}",
        &format!("http://{front}/whoami"),
    ]);
    let (body, local) = text
        .rsplit_once('\n')
        .expect("the body, then curl's address");
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    let client = json["client"]
        .as_str()
        .expect("a client address")
        .to_owned();
    (client, local.to_owned())
}

/// Python's `requests` through nginx: one session (keep-alive to nginx), the whole API.
const PY_API: &str = r#"
import sys, requests

base = sys.argv[1]
s = requests.Session()
created = []
for name in ["apple", "pear", "plum", "fig"]:
    r = s.post(base + "/items", json={"name": name}, timeout=10)
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers["Location"].startswith("/items/"), r.headers
    created.append(r.headers["Location"])
for location in created:
    r = s.get(base + location, timeout=10)
    assert r.status_code == 200 and "name" in r.json(), (r.status_code, r.text)
r = s.put(base + created[0], json={"name": "quince"}, timeout=10)
assert r.status_code == 200, (r.status_code, r.text)
assert s.get(base + created[0], timeout=10).json()["name"] == "quince"
r = s.delete(base + created[1], timeout=10)
assert r.status_code == 204, (r.status_code, r.text)
assert s.get(base + created[1], timeout=10).status_code == 404
r = s.patch(base + "/items", timeout=10)
assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, POST", (r.status_code, r.headers)
names = [item["name"] for item in s.get(base + "/items", timeout=10).json()]
assert "quince" in names and "pear" not in names, names
print("ok", 4 + 4 + 2 + 2 + 1 + 1)
"#;

#[test]
fn the_rest_api_answers_through_nginx_http_over_kept_connections() {
    let mut rest = Example::start("rest", &["127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let metrics = rest.metrics_address();
    let config = Config::deploy("nginx-http.conf").edit_line(
        "server 127.0.0.1:8000 ",
        "127.0.0.1:8000",
        &rest.address,
    );
    let nginx = Balancer::start_nginx(config);
    let base = format!("http://{}", nginx.front);

    // curl, as the file's header says.
    let created = curl(&[
        "-i",
        "-X",
        "POST",
        "-d",
        r#"{"name": "apple"}"#,
        &format!("{base}/items"),
    ]);
    eprintln!(
        "curl through nginx: {}",
        created.lines().next().unwrap_or("")
    );
    assert!(
        created.starts_with("HTTP/1.1 201"),
        "{created}\n{}",
        nginx.logs()
    );
    assert!(created.contains("Location: /items/1"), "{created}");
    let item = curl(&[&format!("{base}/items/1")]);
    let item: serde_json::Value = serde_json::from_str(&item).expect("JSON");
    assert_eq!(item["name"], "apple");

    // Python's requests: the whole API, on one session.
    let out = run(python3().args(["-c", PY_API, &base]), CLIENT_DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok"),
        "requests through nginx: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        nginx.logs()
    );
    let python_requests: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("the count of requests");

    // nginx's http proxy cannot send the PROXY protocol: the server sees nginx.
    let (client, local) = whoami(nginx.front);
    eprintln!("GET /whoami through nginx http: {client} (curl from {local})");
    assert!(
        client.starts_with("127.0.0.1:"),
        "nginx's address: {client}"
    );
    assert_ne!(client, local);

    // Keep-alive upstream: nginx sent every request over a few kept connections, where
    // without `proxy_http_version 1.1; proxy_set_header Connection "";` it opens one per
    // request. The server counts a connection as one request (finished, or open now).
    let scrape = http_get(metrics, "/metrics").expect("scrape");
    let connections = finished(metrics) + sample(&scrape, "socketserver_requests_open");
    let requests = 2 + python_requests + 1;
    eprintln!(
        "{requests} HTTP requests through nginx over {connections} connections to the server \
         (bound 4)"
    );
    assert!(connections <= 4, "{connections} connections\n{scrape}");
    drop(nginx);
    assert_eq!(rest.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn whoami_through_nginx_stream_with_proxy_protocol_names_the_client() {
    let rest = Example::start("rest", &["127.0.0.1:0", "--proxy-protocol", "v1"]);
    let config = Config::deploy("nginx-stream.conf").edit_line(
        "server 127.0.0.1:8000 ",
        "127.0.0.1:8000",
        &rest.address,
    );
    let nginx = Balancer::start_nginx(config);
    let front = nginx.front_of("127.0.0.1:8100");
    for _ in 0..2 {
        let (client, local) = whoami(front);
        eprintln!("GET /whoami through nginx stream: {client} (curl from {local})");
        assert_eq!(
            client,
            local,
            "the client's address, not nginx's\n{}",
            nginx.logs()
        );
    }
    // The rest of the API through the same proxy.
    let out = run(
        python3().args(["-c", PY_API, &format!("http://{front}")]),
        CLIENT_DEADLINE,
    );
    assert!(
        out.status.success(),
        "requests through nginx stream: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(nginx);
    assert_eq!(rest.stop(Signal::SIGTERM).code(), Some(0));
}

/// An echo example behind nginx, on its own loopback address.
struct Instance {
    host: &'static str,
    example: Example,
}

impl Instance {
    /// `echo tcp HOST:0 --proxy-protocol v1`, with `--metrics HOST:0` if `metrics`.
    fn start(host: &'static str, metrics: bool) -> Instance {
        let address = format!("{host}:0");
        let mut args = vec!["tcp", &address, "--proxy-protocol", "v1"];
        if metrics {
            args.extend(["--metrics", &address]);
        }
        let example = Example::start("echo", &args);
        Instance { host, example }
    }
}

/// Sessions nginx has logged as answered by each instance (by address, in `hosts` order).
fn served(nginx: &Balancer, addresses: &[SocketAddr]) -> Vec<u64> {
    let sessions = nginx.sessions_per_server();
    addresses
        .iter()
        .map(|a| sessions.get(&a.to_string()).copied().unwrap_or(0))
        .collect()
}

/// Each instance's share of a phase: the sessions it answered during it.
fn shares(hosts: &[&str], before: &[u64], after: &[u64]) -> String {
    hosts
        .iter()
        .zip(before.iter().zip(after))
        .map(|(host, (b, a))| format!("{host} +{}", a - b))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Requests completed per phase: enough to see the spread, a few seconds at most.
const PHASE: u64 = 3_000;
/// Longest a phase may take to complete [`PHASE`] requests.
const PHASE_LIMIT: Duration = Duration::from_secs(20);
/// Client threads of the load: each has at most one request in flight.
const CLIENTS: usize = 4;

#[test]
fn three_echo_servers_behind_nginx_lose_nothing_to_a_graceful_stop_and_a_kill_costs_its_in_flight()
{
    scale_out(false);
}

/// The same with the servers' metrics listeners on (`--metrics`, as in production). The
/// metrics listener once kept a second descriptor of the server's listening socket, so after
/// the server closed, connections nginx opened waited in a backlog nobody served and were
/// reset (2 or 3 lost in each of 6 runs); it reads the listen queue by the socket's inode now.
#[test]
fn with_metrics_on_a_graceful_stop_behind_nginx_loses_nothing() {
    scale_out(true);
}

/// Three echo servers behind nginx-stream.conf's upstream under a steady load: all three
/// serving, then one stopped gracefully, then one killed.
fn scale_out(metrics: bool) {
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let mut instances: Vec<Option<Instance>> = hosts
        .iter()
        .map(|&h| Some(Instance::start(h, metrics)))
        .collect();
    let addresses: Vec<SocketAddr> = instances
        .iter()
        .flatten()
        .map(|i| i.example.address.parse().expect("an address"))
        .collect();
    let mut nginx = Balancer::nginx(&addresses);
    let load = LineLoad::start(nginx.front, CLIENTS);

    // Phase 1: the load spreads over the three.
    let phase_started = std::time::Instant::now();
    let (t0, s0) = (load.tally(), served(&nginx, &addresses));
    assert!(
        load.wait_completed(PHASE, PHASE_LIMIT),
        "the load did not get going: {:?}\n{}",
        load.errors(),
        nginx.logs()
    );
    let (t1, s1) = (load.tally(), served(&nginx, &addresses));
    let phase1 = t1 - t0;
    eprintln!(
        "phase 1, three servers, {:.1} s: {phase1}; served: {}",
        phase_started.elapsed().as_secs_f64(),
        shares(&hosts, &s0, &s1)
    );
    assert_eq!(phase1.failed, 0, "{:?}", load.errors());
    for (host, (b, a)) in hosts.iter().zip(s0.iter().zip(&s1)) {
        assert!(a > b, "round robin reaches {host}: {s0:?} -> {s1:?}");
    }

    // Phase 2: 127.0.0.3 stops gracefully, as an operator takes a server out of an open
    // source nginx (passive checks only): out of the upstream first (`nginx -s reload`), then
    // SIGTERM (it finishes what it accepted); the others take its share. Stopping it without
    // the reload leaves a moment, between the last look at its backlog and its close, in
    // which a connection nginx has just made is reset (1 in ~3000 in one run of five).
    let phase_started = std::time::Instant::now();
    let stopped = instances[1].take().expect("instance 1");
    nginx.reload_nginx_without(&format!("server {} ", addresses[1]));
    let status = stopped.example.stop(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{} after SIGTERM", stopped.host);
    assert!(
        load.wait_completed(PHASE, PHASE_LIMIT),
        "the load stalled after the graceful stop: {:?}\n{}",
        load.errors(),
        nginx.logs()
    );
    let (t2, s2) = (load.tally(), served(&nginx, &addresses));
    let phase2 = t2 - t1;
    eprintln!(
        "phase 2, {} stopped gracefully, {:.1} s: {phase2} (bound 0 failed); served: {}",
        stopped.host,
        phase_started.elapsed().as_secs_f64(),
        shares(&hosts, &s1, &s2)
    );
    assert_eq!(
        phase2.failed,
        0,
        "a graceful stop behind nginx loses no request: {:?}\n{}",
        load.errors(),
        nginx.logs()
    );
    for i in [0, 2] {
        assert!(
            s2[i] > s1[i],
            "{} takes a share after the stop: {s1:?} -> {s2:?}",
            hosts[i]
        );
    }

    // Phase 3: 127.0.0.4 is killed (SIGKILL): the requests in flight on it fail, the next ones
    // go to 127.0.0.2. At most two per client thread: the one in flight, and one that nginx
    // connected in the moment between the kill and the kernel closing the dead process's
    // listening socket (it sits in that backlog and is reset at the teardown; open source
    // nginx checks servers only passively). Seen once in CI: 5 of 4 clients, client 1 twice,
    // 1 ms apart.
    let phase_started = std::time::Instant::now();
    let killed = instances[2].take().expect("instance 2");
    let status = killed.example.stop(Signal::SIGKILL);
    assert_eq!(status.signal(), Some(9), "{} after SIGKILL", killed.host);
    let completed = load.wait_completed(PHASE, PHASE_LIMIT);
    let s3 = served(&nginx, &addresses);
    let errors = load.errors();
    let end = load.stop();
    let phase3 = end - t2;
    eprintln!(
        "phase 3, {} killed, {:.1} s: {phase3} (bound {} failed, the requests in flight on it \
         and in its backlog); served: {}; failures: {errors:?}",
        killed.host,
        phase_started.elapsed().as_secs_f64(),
        2 * CLIENTS,
        shares(&hosts, &s2, &s3)
    );
    assert!(
        completed,
        "the load stalled after the kill\n{}",
        nginx.logs()
    );
    assert!(
        phase3.failed <= 2 * CLIENTS as u64,
        "only the requests in flight on the killed server fail: {errors:?}\n{}",
        nginx.logs()
    );
    assert!(s3[0] > s2[0], "{s2:?} -> {s3:?}");
    assert_eq!(
        end,
        Tally {
            sent: end.completed + end.failed,
            ..end
        },
        "every request sent ended"
    );
    eprintln!("in all: {end}");
    drop(nginx);
    let last = instances[0].take().expect("instance 0");
    assert_eq!(last.example.stop(Signal::SIGTERM).code(), Some(0));
}
