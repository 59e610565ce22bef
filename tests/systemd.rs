//! systemd, for real: socket activation through Debian's `systemd-socket-activate` (which binds,
//! waits for the first client, then starts this test binary again as the service with
//! `LISTEN_FDS`), inetd-style activation (`--accept`, `--inetd`), the checks on what is passed
//! (wrong kind, another process's `LISTEN_PID`, bad variables), and the exact `sd_notify`
//! datagrams.
//!
//! The service side is `child_process`, run with `SYSTEMD_CHILD` naming what to do (passed
//! through `systemd-socket-activate -E`, which gives its children a fresh environment).

#[path = "util/activation.rs"]
mod activation;
mod util;

use std::env;
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use activation::{python, unique_name, EchoDatagrams, EchoLines, PY_STREAM_ECHO};
use crossbeam_channel::Receiver;
use socketserver::systemd::{self, ActivationError, ListenFds, SocketKind};
use socketserver::transport::Transport;
use socketserver::{
    Handler, Server, Strategy, TcpServer, UdpServer, UnixDatagramServer, UnixStreamServer,
};
use util::child::{exit_status, line_after, lines_of};
use util::{serve, PATIENCE};

// ---------------------------------------------------------------------------------------------
// The service side

/// Runs the service side of a test when `SYSTEMD_CHILD` names one; as an ordinary test it does
/// nothing.
#[test]
fn child_process() {
    let Ok(mode) = env::var("SYSTEMD_CHILD") else {
        return;
    };
    match mode.as_str() {
        "inetd" => inetd_child(),
        "bad-input" => bad_input_child(),
        "notify" => notify_child(),
        kind => serve_child(kind),
    }
}

/// Adopts the socket of `kind` (named `SYSTEMD_NAME`, if set) with the limits every example
/// sets, prints `adopted <address>`, and serves echo until stdin closes.
fn serve_child(kind: &str) {
    let mut passed = ListenFds::from_env().expect("ListenFds::from_env");
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        assert!(env::var_os(variable).is_none(), "{variable} was left set");
    }
    println!("names {}", passed.names().collect::<Vec<_>>().join(":"));
    let name = env::var("SYSTEMD_NAME").ok();
    let name = name.as_deref();
    let missing = "the socket was not passed";
    match kind {
        "tcp" => run(TcpServer::<EchoLines>::builder()
            .read_timeout(Some(PATIENCE))
            .write_timeout(Some(PATIENCE))
            .max_connections(Some(8))
            .from_listener(passed.take_tcp(name).unwrap().expect(missing))
            .unwrap()),
        "udp" => run(UdpServer::<EchoDatagrams>::builder()
            .from_socket(passed.take_udp(name).unwrap().expect(missing))
            .unwrap()),
        "unix" => run(UnixStreamServer::<EchoLines>::builder()
            .read_timeout(Some(PATIENCE))
            .write_timeout(Some(PATIENCE))
            .max_connections(Some(8))
            .from_listener(passed.take_unix_stream(name).unwrap().expect(missing))
            .unwrap()),
        "unix-datagram" => run(UnixDatagramServer::<EchoDatagrams>::builder()
            .from_socket(passed.take_unix_datagram(name).unwrap().expect(missing))
            .unwrap()),
        other => panic!("unknown SYSTEMD_CHILD {other}"),
    }
}

fn run<T: Transport, H: Handler + 'static, S: Strategy>(server: Server<T, H, S>) {
    let running = serve(server);
    println!("adopted {}", running.address);
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    running.stop().close();
    println!("closed");
}

/// Takes the one connection (fd 3 or stdin), echoes one line on it, and says what it took.
fn inetd_child() {
    let taken = systemd::inetd_stream()
        .expect("inetd_stream")
        .expect("a connection was passed");
    println!(
        "inetd fd {} name {} client {} server {}",
        taken.fd(),
        taken.name(),
        taken.client_address(),
        taken.server_address()
    );
    let (connection, _) = taken.into_parts();
    let mut line = String::new();
    io::BufReader::new(&connection)
        .read_line(&mut line)
        .unwrap();
    (&connection).write_all(line.as_bytes()).unwrap();
    connection.shutdown(Shutdown::Both).unwrap();
}

/// With a UDP socket on fd 3: the checks on what is passed, one `case` line each.
fn bad_input_child() {
    let me = std::process::id().to_string();
    let set = |pid: &str, fds: &str, names: Option<&str>| {
        env::set_var("LISTEN_PID", pid);
        env::set_var("LISTEN_FDS", fds);
        match names {
            Some(names) => env::set_var("LISTEN_FDNAMES", names),
            None => env::remove_var("LISTEN_FDNAMES"),
        }
    };
    let fd3_flags =
        || nix::fcntl::fcntl(3, nix::fcntl::FcntlArg::F_GETFD).map(nix::fcntl::FdFlag::from_bits);

    // Another process's LISTEN_PID: nothing is taken, fd 3 is left as it was.
    set("1", "1", Some("web"));
    let passed = ListenFds::from_env().unwrap();
    let gone = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
        .iter()
        .all(|v| env::var_os(v).is_none());
    println!(
        "case foreign: passed {} variables gone {gone}",
        passed.len()
    );
    drop(passed);
    println!("case foreign fd 3 after drop: {:?}", fd3_flags());

    set(&me, "three", None);
    println!("case bad text: {}", ListenFds::from_env().unwrap_err());
    set(&me, "1", Some("a:b"));
    let e = ListenFds::from_env().unwrap_err();
    assert!(matches!(e, ActivationError::NameCount { .. }), "{e:?}");
    println!("case names: {e}");
    set(&me, "1000", None);
    let e = ListenFds::from_env().unwrap_err();
    assert!(matches!(e, ActivationError::NotOpen { .. }), "{e:?}");
    println!("case not open: ok");

    set(&me, "1", Some("web"));
    let mut passed = ListenFds::from_env().unwrap();
    println!("case fd 3 taken: {:?}", fd3_flags());
    let e = passed.take_tcp(None).unwrap_err();
    match &e {
        ActivationError::WrongKind {
            fd: 3,
            found: SocketKind::Udp,
            ..
        } => {}
        other => panic!("not WrongKind for fd 3: {other:?}"),
    }
    println!("case unnamed: {e}");
    println!("case named: {}", passed.take_tcp(Some("web")).unwrap_err());
    println!(
        "case other name: {}",
        passed.take_udp(Some("api")).unwrap_err()
    );
    let udp = passed
        .take_udp(Some("web"))
        .unwrap()
        .expect("the UDP socket");
    println!("case udp: {}", udp.local_addr().unwrap());
    println!("case again: {:?}", passed.take_udp(None).unwrap());
}

/// Sends every notification to `NOTIFY_SOCKET`, then READY=1 to the abstract socket
/// `SYSTEMD_ABSTRACT`, then checks the no-ops and the watchdog variables.
fn notify_child() {
    systemd::notify_ready().unwrap();
    systemd::notify_status("3 workers\nREADY=1").unwrap();
    systemd::notify_reloading().unwrap();
    systemd::notify_main_pid(4242).unwrap();
    systemd::notify_watchdog().unwrap();
    systemd::notify_stopping().unwrap();
    env::set_var("NOTIFY_SOCKET", env::var("SYSTEMD_ABSTRACT").unwrap());
    systemd::notify_ready().unwrap();
    env::remove_var("NOTIFY_SOCKET");
    let unset = [
        systemd::notify_ready(),
        systemd::notify_status("x"),
        systemd::notify_reloading(),
        systemd::notify_stopping(),
        systemd::notify_main_pid(1),
        systemd::notify_watchdog(),
    ];
    println!("unset ok {}", unset.iter().all(Result::is_ok));
    env::set_var("WATCHDOG_USEC", "250000");
    println!("watchdog {:?}", systemd::watchdog_interval());
    env::set_var("WATCHDOG_PID", "1");
    println!("watchdog for pid 1 {:?}", systemd::watchdog_interval());
}

// ---------------------------------------------------------------------------------------------
// The test side

/// This test binary, re-run as the service side `mode`.
fn child_args() -> Vec<String> {
    let exe = env::current_exe().unwrap();
    vec![
        exe.to_str().unwrap().to_owned(),
        "--exact".into(),
        "child_process".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

/// Where `systemd-socket-activate` is; fails the test, saying why, if it is missing.
fn socket_activate() -> &'static str {
    const PATH: &str = "/usr/bin/systemd-socket-activate";
    if !Path::new(PATH).exists() {
        let root = nix::unistd::geteuid().is_root();
        panic!(
            "{PATH} is missing: install Debian's `systemd` package ({}); these tests need it",
            if root {
                "scripts/test does it as root"
            } else {
                "not root here, so scripts/test cannot: sudo apt-get install systemd"
            }
        );
    }
    PATH
}

/// A `systemd-socket-activate` run and its output lines.
struct Activation {
    process: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

/// A free loopback port (for the few microseconds until `systemd-socket-activate` binds it,
/// which does not take port 0; [`activate`] tries again if another process took it).
fn free_port(udp: bool) -> String {
    let port = if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    port.to_string()
}

/// Starts `systemd-socket-activate` with `flags`, listening on what `listen()` gives, running
/// `command` (this binary as `mode`, after any `wrapper` words) and waits until it listens.
/// Returns it and the addresses.
fn activate(
    listen: impl Fn() -> Vec<String>,
    flags: &[&str],
    mode: &str,
    wrapper: &[&str],
) -> (Activation, Vec<String>) {
    let program = socket_activate();
    for _try in 0..5 {
        let addresses = listen();
        let mut command = Command::new(program);
        for address in &addresses {
            command.args(["-l", address]);
        }
        command
            .args(flags)
            .args([
                "-E",
                &format!("SYSTEMD_CHILD={mode}"),
                "-E",
                "RUST_LOG=debug",
            ])
            .args(wrapper)
            .args(child_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = command.spawn().expect("start systemd-socket-activate");
        let stdout = lines_of(process.stdout.take().unwrap());
        let stderr = lines_of(process.stderr.take().unwrap());
        let deadline = Instant::now() + PATIENCE;
        let mut listening = 0;
        let mut taken = false;
        while listening < addresses.len() {
            let line = stderr
                .recv_deadline(deadline)
                .expect("systemd-socket-activate did not listen");
            eprintln!("systemd-socket-activate: {line}");
            if line.starts_with("Listening on ") {
                listening += 1;
            } else if line.contains("Address already in use") {
                taken = true;
                break;
            }
        }
        if taken {
            let _ = process.kill();
            let _ = process.wait();
            continue;
        }
        let activation = Activation {
            process,
            stdout,
            stderr,
        };
        return (activation, addresses);
    }
    panic!("no free port in 5 tries");
}

impl Activation {
    /// The service's `adopted <address>` line.
    fn adopted(&self) -> String {
        line_after(&self.stdout, "adopted ")
    }

    /// Closes the service's stdin and checks that it stops cleanly.
    fn finish(mut self) {
        drop(self.process.stdin.take());
        let status = exit_status(&mut self.process);
        assert!(status.success(), "the service exited with {status}");
        line_after(&self.stdout, "closed");
    }

    /// For `--accept`: waits until the connection's instance has exited (so that it is reaped
    /// before its parent goes), then stops `systemd-socket-activate`.
    fn stop_accepting(mut self) {
        let died = line_after(&self.stderr, "died with code ");
        assert_eq!(died.trim(), "0", "the instance failed");
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

#[test]
fn activation_of_a_tcp_listener() {
    let (service, addresses) = activate(|| vec![free_port(false)], &[], "tcp", &[]);
    let reply = python(PY_STREAM_ECHO, &[&addresses[0], "hello, activated"]);
    assert_eq!(reply, "hello, activated\n");
    assert_eq!(line_after(&service.stdout, "names "), "unknown");
    assert_eq!(service.adopted(), addresses[0]);
    service.finish();
}

#[test]
fn activation_of_a_udp_socket() {
    let (service, addresses) = activate(|| vec![free_port(true)], &["--datagram"], "udp", &[]);
    let server: SocketAddr = addresses[0].parse().unwrap();
    let client = util::udp_client(server);
    // The first datagram starts the service, which then finds it queued on the socket.
    client.send_to(b"ping", server).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).expect("the echo");
    assert_eq!((&buf[..n], from), (&b"ping"[..], server));
    assert_eq!(service.adopted(), addresses[0]);
    service.finish();
}

#[test]
fn activation_of_a_unix_stream_listener_on_a_path() {
    let dir = util::temp_dir();
    let path = dir.path().join("echo.sock").to_str().unwrap().to_owned();
    let (service, _) = activate(|| vec![path.clone()], &[], "unix", &[]);
    let reply = python(PY_STREAM_ECHO, &[&path, "over a file"]);
    assert_eq!(reply, "over a file\n");
    assert_eq!(service.adopted(), path);
    service.finish();
    // The server did not create the file, so it leaves it to whoever did.
    assert!(
        Path::new(&path).exists(),
        "the adopted socket file was removed"
    );
}

#[test]
fn activation_of_a_unix_datagram_socket() {
    let dir = util::temp_dir();
    let path = dir.path().join("echo-dgram.sock");
    let server = path.to_str().unwrap().to_owned();
    let (service, _) = activate(
        || vec![server.clone()],
        &["--datagram"],
        "unix-datagram",
        &[],
    );
    let client = UnixDatagram::bind(dir.path().join("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"ping", &path).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).expect("the echo");
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(service.adopted(), server);
    service.finish();
}

#[test]
fn activation_of_an_abstract_listener() {
    let at = format!("@{}", unique_name("activated"));
    let (service, _) = activate(|| vec![at.clone()], &[], "unix", &[]);
    let reply = python(PY_STREAM_ECHO, &[&at, "over @"]);
    assert_eq!(reply, "over @\n");
    assert_eq!(service.adopted(), at);
    service.finish();
}

#[test]
fn activation_takes_a_socket_by_name() {
    let (service, addresses) = activate(
        || vec![free_port(false), free_port(false)],
        &["--fdname=admin:web"],
        "tcp",
        &["-E", "SYSTEMD_NAME=web"],
    );
    // Connecting to "web" (the second socket, fd 4) starts the service, which serves it.
    let reply = python(PY_STREAM_ECHO, &[&addresses[1], "by name"]);
    assert_eq!(reply, "by name\n");
    assert_eq!(line_after(&service.stdout, "names "), "admin:web");
    assert_eq!(service.adopted(), addresses[1]);
    service.finish();
}

/// Connects to an `--accept` service, sends a line, and checks the echo and what the instance
/// saw; returns the instance's `inetd` line.
fn one_inetd_connection(flags: &[&str], wrapper: &[&str]) -> (String, String, SocketAddr) {
    let (service, addresses) = activate(|| vec![free_port(false)], flags, "inetd", wrapper);
    let server: SocketAddr = addresses[0].parse().unwrap();
    let mut client = util::tcp_client(server);
    client.write_all(b"one request\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "one request\n");
    let client_address = client.local_addr().unwrap();
    // --inetd puts the connection on stdout too, so the wrapper sends the instance's stdout to
    // stderr; read the line where it went.
    let seen = if wrapper.is_empty() {
        line_after(&service.stdout, "inetd ")
    } else {
        line_after(&service.stderr, "inetd ")
    };
    service.stop_accepting();
    (seen, addresses[0].clone(), client_address)
}

#[test]
fn accept_yes_passes_the_connection_on_fd_3() {
    let (seen, server, client) = one_inetd_connection(&["--accept"], &[]);
    assert_eq!(
        seen,
        format!("fd 3 name unknown client {client} server {server}")
    );
}

#[test]
fn inetd_passes_the_connection_on_stdin() {
    let (seen, server, client) = one_inetd_connection(
        &["--accept", "--inetd"],
        &["/bin/sh", "-c", r#"exec "$0" "$@" >&2"#],
    );
    assert_eq!(
        seen,
        format!("fd 0 name stdin client {client} server {server}")
    );
}

#[test]
fn bad_input_is_a_typed_error_naming_the_fd() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_address = udp.local_addr().unwrap();
    // The UDP socket is the child's stdin; the shell moves it to fd 3, as systemd would pass it.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec "$0" "$@" 3<&0 0</dev/null"#)
        .args(child_args())
        .env("SYSTEMD_CHILD", "bad-input")
        .stdin(Stdio::from(OwnedFd::from(udp)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let case = |name: &str| line_after(&lines, &format!("case {name}: "));
    assert_eq!(case("foreign"), "passed 0 variables gone true");
    assert_eq!(
        case("foreign fd 3 after drop"),
        "Ok(Some(FdFlag(0x0)))",
        "fd 3 was closed or changed although LISTEN_PID was another process's"
    );
    assert_eq!(
        case("bad text"),
        "invalid LISTEN_FDS=\"three\" in the environment: invalid LISTEN_FDS"
    );
    assert_eq!(
        case("names"),
        "LISTEN_FDNAMES=\"a:b\" does not name the 1 descriptors of LISTEN_FDS"
    );
    assert_eq!(case("not open"), "ok");
    assert_eq!(case("fd 3 taken"), "Ok(Some(FdFlag(FD_CLOEXEC)))");
    assert_eq!(
        case("unnamed"),
        "fd 3 (\"web\") is a UDP socket; a TCP listener was asked for"
    );
    assert_eq!(
        case("named"),
        "fd 3 (\"web\") is a UDP socket; a TCP listener was asked for"
    );
    assert_eq!(
        case("other name"),
        "no socket named \"api\" was passed (LISTEN_FDNAMES: [\"web\"])"
    );
    assert_eq!(case("udp"), udp_address.to_string());
    assert_eq!(case("again"), "None");
    let status = exit_status(&mut child);
    assert!(status.success(), "the child exited with {status}");
}

#[test]
fn sd_notify_sends_the_exact_datagrams() {
    let dir = util::temp_dir();
    let path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(PATIENCE)).unwrap();
    let abstract_name = unique_name("notify");
    let abstract_manager = UnixDatagram::bind_addr(
        &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            &abstract_name,
        )
        .unwrap(),
    )
    .unwrap();
    abstract_manager.set_read_timeout(Some(PATIENCE)).unwrap();

    let before = monotonic_usec();
    let mut child = Command::new(env::current_exe().unwrap())
        .args(&child_args()[1..])
        .env("SYSTEMD_CHILD", "notify")
        .env("NOTIFY_SOCKET", &path)
        .env("SYSTEMD_ABSTRACT", format!("@{abstract_name}"))
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let next = |socket: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(&manager), "READY=1\n");
    assert_eq!(next(&manager), "STATUS=3 workers READY=1\n");
    let reloading = next(&manager);
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not RELOADING=1 with MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .unwrap();
    let after = monotonic_usec();
    assert!(
        (before..=after).contains(&usec),
        "MONOTONIC_USEC={usec} is not between {before} and {after}"
    );
    assert_eq!(next(&manager), "MAINPID=4242\n");
    assert_eq!(next(&manager), "WATCHDOG=1\n");
    assert_eq!(next(&manager), "STOPPING=1\n");
    assert_eq!(next(&abstract_manager), "READY=1\n");
    assert_eq!(line_after(&lines, "unset ok "), "true");
    assert_eq!(line_after(&lines, "watchdog "), "Some(250ms)");
    assert_eq!(line_after(&lines, "watchdog for pid 1 "), "None");
    let status = exit_status(&mut child);
    assert!(status.success(), "the child exited with {status}");
}

/// `CLOCK_MONOTONIC` in microseconds, the clock of `MONOTONIC_USEC`.
fn monotonic_usec() -> u64 {
    use nix::libc;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(rc, 0, "clock_gettime: {}", io::Error::last_os_error());
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}
