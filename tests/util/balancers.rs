//! Real load balancers for the PROXY protocol tests (included with `#[path]` from
//! tests/load_balancer.rs): HAProxy and nginx started in the foreground on loopback, with a
//! generated configuration, pid and logs in a temp dir of their own, and stopped when dropped.
//! Also the handler the tests put behind them, and a client bound to a chosen loopback address.
#![allow(dead_code)]

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A load balancer process, stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct Balancer {
    pub name: &'static str,
    pub front: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Balancer {
    /// HAProxy in front of `servers`, round robin, `send` (`send-proxy` or `send-proxy-v2`)
    /// to each, with health checks every 200 ms that send the header too.
    pub fn haproxy(servers: &[SocketAddr], send: &str) -> Balancer {
        let haproxy = program("haproxy", "haproxy");
        let port = free_port();
        let mut config = format!(
            "global\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    \
             timeout server 20s\n    retries 3\n    option redispatch 1\n\
             frontend front\n    bind 127.0.0.1:{port}\n    default_backend app\n\
             backend app\n    balance roundrobin\n"
        );
        for (i, server) in servers.iter().enumerate() {
            config.push_str(&format!(
                "    server s{i} {server} {send} check check-send-proxy inter 200ms fall 2 rise 1\n"
            ));
        }
        let dir = crate::util::temp_dir();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).expect("write haproxy.cfg");
        let log = dir.path().join("haproxy.log");
        let child = Command::new(haproxy)
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).expect("log file"))
            .spawn()
            .expect("start haproxy");
        Balancer::started("haproxy", port, child, dir, log)
    }

    /// nginx's `stream` module in front of `server`, with `proxy_protocol on;` (v1).
    pub fn nginx(server: SocketAddr) -> Balancer {
        let nginx = program("nginx", "nginx libnginx-mod-stream");
        let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        assert!(
            module.is_file(),
            "nginx's stream module is not installed: run scripts/test, or \
             `sudo apt-get install libnginx-mod-stream`"
        );
        let port = free_port();
        let dir = crate::util::temp_dir();
        let log = dir.path().join("error.log");
        let config = format!(
            "load_module {module};\n\
             worker_processes 1;\n\
             pid {pid};\n\
             error_log {log} info;\n\
             events {{ worker_connections 64; }}\n\
             stream {{\n    server {{\n        listen 127.0.0.1:{port};\n        \
             proxy_pass {server};\n        proxy_protocol on;\n    }}\n}}\n",
            module = module.display(),
            pid = dir.path().join("nginx.pid").display(),
            log = log.display(),
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config).expect("write nginx.conf");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&file)
            .arg("-e")
            .arg(&log)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nginx.err")).expect("log file"))
            .spawn()
            .expect("start nginx");
        Balancer::started("nginx", port, child, dir, log)
    }

    /// Waits (bounded) until the front end accepts connections.
    fn started(
        name: &'static str,
        port: u16,
        mut child: Child,
        dir: tempfile::TempDir,
        log: PathBuf,
    ) -> Balancer {
        let front = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if TcpStream::connect_timeout(&front, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(dir.path().join(format!("{name}.err")))
                    .unwrap_or_default();
                panic!("{name} exited at start ({status}):\n{err}");
            }
            assert!(Instant::now() < deadline, "{name} did not start listening");
            std::thread::park_timeout(Duration::from_millis(20));
        }
        Balancer {
            name,
            front,
            child,
            dir,
            log,
        }
    }

    /// What the balancer wrote to its logs so far (for failure messages).
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
                out.push_str(&format!("--- {}\n", path.display()));
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        let _ = &self.log;
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
