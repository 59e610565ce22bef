//! Real load balancers for the tests behind them (included with `#[path]` from
//! tests/load_balancer.rs and tests/load_balancer_nginx.rs): HAProxy and nginx started in the
//! foreground on loopback with the configuration files of `examples/deploy/` (their addresses
//! replaced by the test's, see [`Config`]), pid and logs in a temp dir of their own, and stopped
//! when dropped. Also the handler the tests put behind them, a client bound to a chosen loopback
//! address, a steady load of echoed lines ([`LineLoad`]) and a reader of the servers' metrics.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler};

/// Longest a balancer takes to start serving, or to stop.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Answers one line: `whoami` with the client address it sees (and the proxy's, and whether
/// the header was LOCAL), anything else by echoing the line; then closes. Lines answered are
/// counted in the state (health checks send none, so they are not).
pub struct EchoOne;

/// What the servers behind a balancer count: lines answered (shared with the test).
#[derive(Default)]
pub struct Served {
    pub lines: Arc<AtomicU64>,
}

impl Handler for EchoOne {
    type State = Served;
    fn new(_: &ServerContext<Served>) -> Self {
        EchoOne
    }
}

impl StreamRequestHandler for EchoOne {
    fn handle(&mut self, request: &mut StreamRequest<'_, Served>) -> HandleResult {
        let mut line = String::new();
        match request.rfile.read_line(&mut line) {
            // HAProxy ends its health checks (a header, no request) with a reset.
            Ok(0) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        request
            .server()
            .state()
            .lines
            .fetch_add(1, Ordering::Relaxed);
        if line.trim_end() == "whoami" {
            let proxy = request.proxy().map(|p| p.peer().to_string());
            let reply = format!(
                "client={} proxy={} version={}\n",
                request.client_address(),
                proxy.unwrap_or_else(|| "-".into()),
                request
                    .proxy()
                    .map_or("-".into(), |p| p.version().to_string()),
            );
            request.wfile.write_all(reply.as_bytes())?;
        } else {
            request.wfile.write_all(line.as_bytes())?;
        }
        Ok(())
    }
}

/// A free loopback port for a balancer's front end: bound, read, released (the balancer binds
/// it a moment later; the kernel does not hand a port just released to the next port-0 bind).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Sends `whoami` from the loopback address `source` to `front` and returns the reply.
pub fn whoami_from(source: Ipv4Addr, front: SocketAddr) -> std::io::Result<String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(&front.into(), Duration::from_secs(5))?;
    let mut client: TcpStream = socket.into();
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let local = client.local_addr()?;
    client.write_all(b"whoami\n")?;
    let mut reply = String::new();
    client.read_to_string(&mut reply)?;
    Ok(format!("from={local} {reply}"))
}

/// The path of a program the test needs, or a failure saying how to install it.
pub fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "{name} is not installed: run scripts/test (it installs it), or \
         `sudo apt-get install {package}`"
    );
}

/// A configuration file of `examples/deploy/`, as the tests run it: every address it listens on
/// (nginx's `listen`, HAProxy's `bind`) moved to a free port, and the servers' addresses
/// replaced by the test's. Each replacement must find what it replaces, so a change to the file
/// that the tests do not follow fails them instead of passing unseen.
pub struct Config {
    file: &'static str,
    text: String,
    /// Each listening address of the file, and the free one the test uses instead.
    fronts: Vec<(String, SocketAddr)>,
}

impl Config {
    /// `examples/deploy/<file>`, with its listening addresses on free ports.
    pub fn deploy(file: &'static str) -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/deploy")
            .join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut fronts = Vec::new();
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                let (Some(&("listen" | "bind")), Some(address)) = (words.first(), words.get(1))
                else {
                    return line.to_owned();
                };
                let address = address.trim_end_matches(';');
                let original: SocketAddr = address
                    .parse()
                    .unwrap_or_else(|e| panic!("{file}: {address:?} in {line:?}: {e}"));
                let free = SocketAddr::new(original.ip(), free_port());
                fronts.push((address.to_owned(), free));
                line.replacen(address, &free.to_string(), 1)
            })
            .collect();
        assert!(!fronts.is_empty(), "{file} listens nowhere");
        Config {
            file,
            text: lines.join("\n") + "\n",
            fronts,
        }
    }

    /// The free address the test uses for the file's listening address `original`.
    pub fn front(&self, original: &str) -> SocketAddr {
        self.fronts
            .iter()
            .find(|(address, _)| address == original)
            .unwrap_or_else(|| panic!("{} does not listen on {original}", self.file))
            .1
    }

    /// In the one line (not a comment) that holds `key`, replaces `from` with `to`.
    pub fn edit_line(mut self, key: &str, from: &str, to: impl std::fmt::Display) -> Config {
        let mut found = 0;
        let lines: Vec<String> = self
            .text
            .lines()
            .map(|line| {
                if is_setting(line) && line.contains(key) {
                    found += 1;
                    assert!(
                        line.contains(from),
                        "{}: no {from:?} in {line:?}",
                        self.file
                    );
                    line.replacen(from, &to.to_string(), 1)
                } else {
                    line.to_owned()
                }
            })
            .collect();
        assert_eq!(found, 1, "{}: {found} lines hold {key:?}", self.file);
        self.text = lines.join("\n") + "\n";
        self
    }

    /// Leaves out the lines (not comments) that hold `key`: at least one.
    pub fn drop_lines(mut self, key: &str) -> Config {
        let before = self.text.lines().count();
        let lines: Vec<&str> = self
            .text
            .lines()
            .filter(|line| !(is_setting(line) && line.contains(key)))
            .collect();
        assert!(lines.len() < before, "{}: no line holds {key:?}", self.file);
        self.text = lines.join("\n") + "\n";
        self
    }

    /// The text the balancer runs.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A line that is not a comment.
fn is_setting(line: &str) -> bool {
    !line.trim_start().starts_with('#')
}

/// A load balancer process, stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct Balancer {
    pub name: &'static str,
    /// Where clients connect: the first listening address of its configuration.
    pub front: SocketAddr,
    fronts: Vec<(String, SocketAddr)>,
    child: Child,
    dir: tempfile::TempDir,
    /// The configuration it runs.
    text: String,
}

impl Balancer {
    /// nginx with `config` (`nginx -p DIR -c FILE -g 'daemon off;'`, the relative paths of
    /// the file under a temp dir of its own), once it accepts connections on every address.
    pub fn start_nginx(config: Config) -> Balancer {
        let nginx = program("nginx", "nginx libnginx-mod-stream");
        if config.text().contains("ngx_stream_module") {
            let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
            assert!(
                module.is_file(),
                "nginx's stream module is not installed: run scripts/test, or \
                 `sudo apt-get install libnginx-mod-stream`"
            );
        }
        let dir = crate::util::temp_dir();
        // nginx's workers run as another user: they may need to reach the temp paths.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the nginx dir");
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config.text()).expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nginx.err")).expect("log file"))
            .spawn()
            .expect("start nginx");
        Balancer::started("nginx", config, child, dir)
    }

    /// HAProxy with `config` (`haproxy -f FILE -db`, in a temp dir of its own), once it
    /// accepts connections on every address.
    pub fn start_haproxy(config: Config) -> Balancer {
        let haproxy = program("haproxy", "haproxy");
        let dir = crate::util::temp_dir();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config.text()).expect("write haproxy.cfg");
        let child = Command::new(haproxy)
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("haproxy.log")).expect("log file"))
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).expect("log file"))
            .spawn()
            .expect("start haproxy");
        Balancer::started("haproxy", config, child, dir)
    }

    /// `examples/deploy/haproxy.cfg` in front of up to three servers of its `echo` backend,
    /// each a `(server, metrics listener)` pair on the same address (the health checks ask
    /// the metrics listener's `/readyz`), sending `send` (`send-proxy-v2` as the file does, or
    /// `send-proxy` for v1). The `rest` backend is left without servers.
    pub fn haproxy(servers: &[(SocketAddr, SocketAddr)], send: &str) -> Balancer {
        assert!(servers.len() <= 3, "haproxy.cfg has three echo servers");
        let mut config = Config::deploy("haproxy.cfg").drop_lines("server rest1 ");
        for i in 0..3 {
            let key = format!("server echo{} ", i + 1);
            let Some((server, metrics)) = servers.get(i) else {
                config = config.drop_lines(&key);
                continue;
            };
            assert_eq!(
                server.ip(),
                metrics.ip(),
                "checks go to the server's address"
            );
            config = config
                .edit_line(&key, &format!("127.0.0.{}:9000", i + 2), server)
                .edit_line(&key, "port 9090", format!("port {}", metrics.port()))
                .edit_line(&key, "send-proxy-v2", send);
        }
        let front = config.front("127.0.0.1:9200");
        let mut balancer = Balancer::start_haproxy(config);
        balancer.front = front;
        balancer
    }

    /// `examples/deploy/haproxy.cfg` in front of one `rest` server with its metrics listener;
    /// the `echo` backend is left without servers.
    pub fn haproxy_rest(server: SocketAddr, metrics: SocketAddr) -> Balancer {
        assert_eq!(
            server.ip(),
            metrics.ip(),
            "checks go to the server's address"
        );
        let config = Config::deploy("haproxy.cfg")
            .drop_lines("server echo")
            .edit_line("server rest1 ", "127.0.0.1:8000", server)
            .edit_line(
                "server rest1 ",
                "port 9091",
                format!("port {}", metrics.port()),
            );
        let front = config.front("127.0.0.1:8200");
        let mut balancer = Balancer::start_haproxy(config);
        balancer.front = front;
        balancer
    }

    /// `examples/deploy/nginx-stream.conf` in front of `servers` (one to three) as its `echo`
    /// upstream, with `proxy_protocol on;` (v1).
    pub fn nginx(servers: &[SocketAddr]) -> Balancer {
        assert!(
            (1..=3).contains(&servers.len()),
            "nginx-stream.conf has three echo servers"
        );
        let mut config = Config::deploy("nginx-stream.conf");
        for i in 0..3 {
            let original = format!("127.0.0.{}:9000", i + 2);
            let key = format!("server {original} ");
            config = match servers.get(i) {
                Some(server) => config.edit_line(&key, &original, server),
                None => config.drop_lines(&key),
            };
        }
        let front = config.front("127.0.0.1:9100");
        let mut balancer = Balancer::start_nginx(config);
        balancer.front = front;
        balancer
    }

    /// nginx only: takes out of its configuration the lines that contain `line`, and reloads
    /// it (SIGHUP to the master, as `nginx -s reload` does); returns once the old workers have
    /// stopped taking connections (nginx logs "gracefully shutting down"). This is how a
    /// server leaves an nginx upstream without a failed request: open source nginx checks
    /// servers only passively, so it would go on connecting to one until it refuses.
    pub fn reload_nginx_without(&mut self, line: &str) {
        assert_eq!(self.name, "nginx");
        let text: String = self
            .text
            .lines()
            .filter(|l| !l.contains(line))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(text.len(), self.text.len(), "no line holds {line:?}");
        std::fs::write(self.dir.path().join("nginx.conf"), &text).expect("write nginx.conf");
        self.text = text;
        let log = self.dir.path().join("error.log");
        let shutting = |log: &Path| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches("gracefully shutting down")
                .count()
        };
        let before = shutting(&log);
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP nginx");
        let deadline = Instant::now() + START_LIMIT;
        while shutting(&log) <= before {
            assert!(
                Instant::now() < deadline,
                "nginx did not reload:\n{}",
                self.logs()
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// The address the balancer listens on in place of its file's `original`.
    pub fn front_of(&self, original: &str) -> SocketAddr {
        self.fronts
            .iter()
            .find(|(address, _)| address == original)
            .unwrap_or_else(|| panic!("{} does not listen on {original}", self.name))
            .1
    }

    /// Waits (bounded) until every front end listens (seen in `/proc/net/tcp`, not by
    /// connecting: a probe connection would reach a server as a client that sends nothing,
    /// and HAProxy may close it before its PROXY header, which the server counts as refused).
    fn started(
        name: &'static str,
        config: Config,
        mut child: Child,
        dir: tempfile::TempDir,
    ) -> Balancer {
        let deadline = Instant::now() + START_LIMIT;
        for (_, front) in &config.fronts {
            loop {
                if listening(*front) {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let err = std::fs::read_to_string(dir.path().join(format!("{name}.err")))
                        .unwrap_or_default();
                    panic!("{name} exited at start ({status}):\n{err}");
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} did not start listening on {front}"
                );
                std::thread::park_timeout(Duration::from_millis(20));
            }
        }
        Balancer {
            name,
            front: config.fronts[0].1,
            text: config.text,
            fronts: config.fronts,
            child,
            dir,
        }
    }

    /// Sessions nginx's stream proxy has logged so far (its `access.log`, in the `sessions`
    /// format of nginx-stream.conf) that a server answered (status 200), per server: the last
    /// of `$upstream_addr`, the others having refused the connection.
    pub fn sessions_per_server(&self) -> std::collections::BTreeMap<String, u64> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let mut per_server = std::collections::BTreeMap::new();
        for line in log.lines() {
            // "CLIENT:PORT SERVER:PORT[, SERVER:PORT...] STATUS SECONDS"
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [_, .., server, "200", _] = words.as_slice() {
                *per_server.entry(server.to_string()).or_insert(0) += 1;
            }
        }
        per_server
    }

    /// Connections HAProxy has logged so far (`option tcplog` on its standard output, as
    /// haproxy.cfg sets) that ended normally (`--`), per `backend/server`.
    pub fn connections_per_server(&self) -> std::collections::BTreeMap<String, u64> {
        let log = std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default();
        let mut per_server = std::collections::BTreeMap::new();
        for line in log.lines() {
            // "CLIENT:PORT [DATE] FRONTEND BACKEND/SERVER TW/TC/TT BYTES STATE ..."
            let words: Vec<&str> = line.split_whitespace().collect();
            if let [_, _, _, server, _, _, "--", ..] = words.as_slice() {
                *per_server.entry(server.to_string()).or_insert(0) += 1;
            }
        }
        per_server
    }

    /// The last lines the balancer wrote to each of its logs (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("log" | "err")
            ) {
                // The last lines: access logs of a load run to thousands.
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let shown = &lines[lines.len().saturating_sub(40)..];
                out.push_str(&format!(
                    "--- {} (last {} of {} lines)\n",
                    path.display(),
                    shown.len(),
                    lines.len()
                ));
                for line in shown {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        // SIGTERM: nginx's master stops its worker first (a SIGKILL would orphan it).
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a TCP socket listens on `address` (IPv4) in this network namespace, from
/// `/proc/net/tcp` (local address as the kernel prints it, state `0A`: LISTEN).
fn listening(address: SocketAddr) -> bool {
    let std::net::IpAddr::V4(ip) = address.ip() else {
        panic!("an IPv4 front end: {address}");
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        address.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.get(1) == Some(&local.as_str()) && words.get(3) == Some(&"0A")
    })
}

/// `GET path` on `address` (HTTP/1.0: the server closes after answering), the whole answer.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut client = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    client.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    client.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The sum of the samples of `name` (with any labels, such as
/// `socketserver_requests_total{outcome="succeeded"}`: pass the name and its labels) in a
/// Prometheus text scrape.
pub fn sample(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Requests a server behind a balancer has finished, from its metrics listener (its
/// `socketserver_requests_total`, both outcomes).
pub fn finished(metrics: SocketAddr) -> u64 {
    let scrape = http_get(metrics, "/metrics").unwrap_or_else(|e| panic!("scrape {metrics}: {e}"));
    sample(
        &scrape,
        "socketserver_requests_total{outcome=\"succeeded\"}",
    ) + sample(&scrape, "socketserver_requests_total{outcome=\"failed\"}")
}

/// Most requests one client thread of a [`LineLoad`] sends.
const LOAD_MAX_PER_THREAD: u64 = 20_000;
/// Longest a [`LineLoad`] runs.
const LOAD_MAX_TIME: Duration = Duration::from_secs(60);

/// A steady, bounded load on an echo server behind a balancer: client threads that each
/// connect, send a line, read the same line back (exactly its bytes: the echo server answers
/// as long as the connection is open), check it and close, one request after the other, until
/// stopped (or a count or a time bound is reached).
pub struct LineLoad {
    stop: Arc<AtomicBool>,
    counts: Arc<LoadCounts>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// How many client threads: at most this many requests are in flight at once.
    pub clients: usize,
}

/// What a [`LineLoad`] counts, shared with its threads.
#[derive(Default)]
struct LoadCounts {
    sent: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    errors: parking_lot::Mutex<Vec<String>>,
}

/// Requests sent, completed (the whole reply, checked) and failed, so far or in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
}

impl std::ops::Sub for Tally {
    type Output = Tally;
    fn sub(self, earlier: Tally) -> Tally {
        Tally {
            sent: self.sent - earlier.sent,
            completed: self.completed - earlier.completed,
            failed: self.failed - earlier.failed,
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, completed {}, failed {}",
            self.sent, self.completed, self.failed
        )
    }
}

impl LineLoad {
    /// Starts `clients` client threads against `front`.
    pub fn start(front: SocketAddr, clients: usize) -> LineLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(LoadCounts::default());
        let threads = (0..clients)
            .map(|t| {
                let stop = Arc::clone(&stop);
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || line_client(front, t, &stop, &counts))
            })
            .collect();
        LineLoad {
            stop,
            counts,
            threads,
            clients,
        }
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        // Completed and failed first: a request is counted sent before its outcome.
        let completed = self.counts.completed.load(Ordering::SeqCst);
        let failed = self.counts.failed.load(Ordering::SeqCst);
        Tally {
            sent: self.counts.sent.load(Ordering::SeqCst),
            completed,
            failed,
        }
    }

    /// Waits (at most `limit`) until `more` requests more than now have completed.
    pub fn wait_completed(&self, more: u64, limit: Duration) -> bool {
        let goal = self.tally().completed + more;
        crate::util::eventually(limit, || self.tally().completed >= goal)
    }

    /// The first failures (at most 10), each with when it happened (seconds from the start).
    pub fn errors(&self) -> Vec<String> {
        self.counts.errors.lock().clone()
    }

    /// Stops the clients (each finishes the request it is on) and returns the final counts.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("a load thread");
        }
        let counts = &self.counts;
        Tally {
            sent: counts.sent.load(Ordering::SeqCst),
            completed: counts.completed.load(Ordering::SeqCst),
            failed: counts.failed.load(Ordering::SeqCst),
        }
    }
}

/// One client thread of a [`LineLoad`].
fn line_client(front: SocketAddr, t: usize, stop: &AtomicBool, counts: &LoadCounts) {
    let started = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst)
        && n < LOAD_MAX_PER_THREAD
        && started.elapsed() < LOAD_MAX_TIME
    {
        n += 1;
        counts.sent.fetch_add(1, Ordering::SeqCst);
        let line = format!("client {t} request {n}\n");
        match echo_line(front, &line) {
            Ok(()) => counts.completed.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                let mut errors = counts.errors.lock();
                if errors.len() < 10 {
                    let at = started.elapsed().as_secs_f64();
                    errors.push(format!("at {at:.3} s, {}: {e}", line.trim_end()));
                }
                counts.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
    }
}

/// One request: `line` sent, and exactly its bytes read back.
fn echo_line(front: SocketAddr, line: &str) -> std::io::Result<()> {
    let mut client = TcpStream::connect_timeout(&front, Duration::from_secs(5))?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    client.write_all(line.as_bytes())?;
    let mut reply = vec![0; line.len()];
    client.read_exact(&mut reply)?;
    if reply != line.as_bytes() {
        return Err(std::io::Error::other(format!(
            "reply {:?}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(())
}
