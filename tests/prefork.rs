//! The prefork supervisor, in real processes: each test runs a supervisor in a child process
//! (this test binary, re-run with `PREFORK_CHILD` naming the test), which forks its workers;
//! the test sends real signals and real requests over loopback, and reads what the child
//! prints (tests/util/prefork.rs). Here: serving, the signals that change the workers under
//! load, and the four transports; tests/prefork_faults.rs has the failures.

#[path = "util/prefork.rs"]
mod harness;
#[path = "util/load.rs"]
mod load;
mod util;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use load::Load;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::prefork::Prefork;
use socketserver::Threading;
use util::child::{exit_status, lines_of};

#[test]
fn workers_start_serve_and_stop_on_sigterm() {
    const NAME: &str = "workers_start_serve_and_stop_on_sigterm";
    if is_child(NAME) {
        supervise(Prefork::new(threading_server()).workers(3));
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let pids = supervisor.settled(3);
    assert_eq!(
        children_of(supervisor.pid()),
        pids,
        "the workers are the supervisor's children"
    );
    assert!(!pids.contains(&supervisor.pid().as_raw()));
    for i in 0..20 {
        assert_eq!(
            echo(supervisor.address, &format!("hello {i}")),
            format!("hello {i}\n")
        );
    }
    let report = supervisor.stop();
    assert!(report.contains("started=3 crashed=0 killed=0"), "{report}");
    for pid in pids {
        assert!(is_dead(pid), "worker {pid} outlived its supervisor's stop");
    }
}

#[test]
fn sighup_reloads_every_worker_under_load_without_a_failed_request() {
    const NAME: &str = "sighup_reloads_every_worker_under_load_without_a_failed_request";
    if is_child(NAME) {
        supervise(Prefork::new(threading_server()).workers(2));
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let old = supervisor.settled(2);
    let load = Load::start(supervisor.address, 8);
    assert!(load.wait_for(200), "the load runs");
    supervisor.signal(Signal::SIGHUP);
    supervisor.log("reload complete");
    let new = ready_pids(&supervisor.board_where("every worker replaced", |b| {
        b.len() == 2 && ready_pids(b).len() == 2 && ready_pids(b).is_disjoint(&old)
    }));
    eprintln!("SIGHUP reload: workers {old:?} -> {new:?}");
    assert!(load.wait_for(200), "the new workers serve");
    let counts = load.stop();
    report("SIGHUP reload", &counts);
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    assert!(old.iter().all(|&pid| is_dead(pid)));
    supervisor.stop();
}

#[test]
fn sigttin_then_sigttou_under_load_without_a_failed_request() {
    const NAME: &str = "sigttin_then_sigttou_under_load_without_a_failed_request";
    if is_child(NAME) {
        supervise(Prefork::new(threading_server()).workers(2));
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let two = supervisor.settled(2);
    let load = Load::start(supervisor.address, 8);
    assert!(load.wait_for(200), "the load runs");
    supervisor.signal(Signal::SIGTTIN);
    let three = supervisor.settled(3);
    assert!(three.is_superset(&two), "{two:?} -> {three:?}");
    assert!(load.wait_for(200));
    supervisor.signal(Signal::SIGTTOU);
    let back = supervisor.settled(2);
    assert!(three.is_superset(&back), "{three:?} -> {back:?}");
    assert!(load.wait_for(200));
    let counts = load.stop();
    report("SIGTTIN then SIGTTOU", &counts);
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    supervisor.stop();
}

#[test]
fn max_requests_recycles_workers_under_load_without_a_failed_request() {
    const NAME: &str = "max_requests_recycles_workers_under_load_without_a_failed_request";
    if is_child(NAME) {
        supervise(
            Prefork::new(threading_server())
                .workers(2)
                .max_requests(Some(150))
                .max_requests_jitter(50),
        );
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let first = supervisor.settled(2);
    let load = Load::start(supervisor.address, 8);
    for _ in 0..3 {
        supervisor.line("max_requests reached");
    }
    let counts = load.stop();
    report("max_requests recycling (3 recycles)", &counts);
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    supervisor.board_where("the first workers replaced", |b| {
        b.len() == 2 && ready_pids(b).len() == 2 && ready_pids(b).is_disjoint(&first)
    });
    supervisor.stop();
}

#[test]
fn unix_stream_workers_keep_the_socket_file_through_a_reload_and_the_supervisor_removes_it() {
    const NAME: &str =
        "unix_stream_workers_keep_the_socket_file_through_a_reload_and_the_supervisor_removes_it";
    if is_child(NAME) {
        let path = std::env::var("PREFORK_SOCKET").expect("PREFORK_SOCKET");
        let server = socketserver::UnixStreamServer::<Echo>::builder()
            .strategy(Threading::new())
            .poll_interval(Duration::from_millis(50))
            .read_timeout(Some(Duration::from_secs(10)))
            .write_timeout(Some(Duration::from_secs(10)))
            .max_connections(Some(64))
            .bind(&path)
            .expect("bind");
        supervise(Prefork::new(server).workers(2));
        return;
    }
    let dir = util::temp_dir();
    let path = dir.path().join("prefork.sock");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env("PREFORK_CHILD", NAME)
        .env("PREFORK_SOCKET", &path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let ask = |line: &str| {
        let mut client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        client.set_read_timeout(Some(STEP)).expect("timeout");
        client
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
        let mut reply = String::new();
        client.read_to_string(&mut reply).expect("reply");
        reply
    };
    let deadline = Instant::now() + STEP;
    let wait_for = |text: &str| loop {
        let line = stdout
            .recv_deadline(deadline)
            .expect("a line from the child");
        if line.contains(text) {
            return;
        }
    };
    wait_for("serving on");
    assert_eq!(ask("one"), "one\n");
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    // Both old workers drained and exited: their exits did not remove the file.
    wait_for("exit 2 ");
    assert!(path.exists(), "a worker removed the socket file");
    assert_eq!(ask("two"), "two\n");
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    wait_for("report ");
    assert!(exit_status(&mut child).success());
    assert!(!path.exists(), "the supervisor removes the socket file");
}

#[test]
fn udp_workers_answer_datagrams() {
    const NAME: &str = "udp_workers_answer_datagrams";
    if is_child(NAME) {
        let server = socketserver::UdpServer::<EchoDatagram>::builder()
            .poll_interval(Duration::from_millis(50))
            .bind("127.0.0.1:0")
            .expect("bind");
        supervise(Prefork::new(server).workers(2));
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    supervisor.settled(2);
    let client = util::udp_client(supervisor.address);
    for i in 0..20 {
        let message = format!("datagram {i}");
        client
            .send_to(message.as_bytes(), supervisor.address)
            .expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], message.as_bytes());
    }
    supervisor.stop();
}

/// The listening TCP sockets on `port` (state 0A in /proc/net/tcp).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.get(1).is_some_and(|a| a.ends_with(&local)) && cols.get(3) == Some(&"0A")
        })
        .count()
}

#[test]
fn reuse_port_workers_recycle_under_load_without_a_failed_request() {
    const NAME: &str = "reuse_port_workers_recycle_under_load_without_a_failed_request";
    if is_child(NAME) {
        let server = socketserver::TcpServer::<Echo>::builder()
            .strategy(Threading::new())
            .reuse_port(true)
            .poll_interval(Duration::from_millis(50))
            .read_timeout(Some(Duration::from_secs(10)))
            .write_timeout(Some(Duration::from_secs(10)))
            .max_connections(Some(256))
            .bind("127.0.0.1:0")
            .expect("bind");
        supervise(
            Prefork::new(server)
                .workers(2)
                .reuse_port(true)
                .max_requests(Some(150))
                .max_requests_jitter(50),
        );
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let first = supervisor.settled(2);
    // A socket per worker slot.
    assert_eq!(listeners_on(supervisor.address.port()), 2);
    let load = Load::start(supervisor.address, 8);
    for _ in 0..4 {
        supervisor.line("max_requests reached");
    }
    let counts = load.stop();
    report("SO_REUSEPORT: max_requests recycling (4 recycles)", &counts);
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    supervisor.board_where("the first workers replaced", |b| {
        b.len() == 2 && ready_pids(b).len() == 2 && ready_pids(b).is_disjoint(&first)
    });
    // The replacements took over their slots' sockets: still two.
    assert_eq!(listeners_on(supervisor.address.port()), 2);
    supervisor.signal(Signal::SIGTTIN);
    supervisor.settled(3);
    assert_eq!(listeners_on(supervisor.address.port()), 3, "a third slot");
    supervisor.signal(Signal::SIGTTOU);
    supervisor.settled(2);
    assert!(
        util::eventually(STEP, || listeners_on(supervisor.address.port()) == 2),
        "the third slot's socket is closed"
    );
    supervisor.stop();
}

#[test]
fn reuse_port_needs_a_server_bound_with_so_reuseport() {
    let server = harness::threading_server();
    let error = Prefork::new(server)
        .workers(1)
        .reuse_port(true)
        .serve()
        .expect_err("a server without SO_REUSEPORT");
    assert!(error.to_string().contains("SO_REUSEPORT"), "{error}");
}
