//! The prefork supervisor, in real processes: each test runs a supervisor in a child process
//! (this test binary, re-run with `PREFORK_CHILD` naming the test), which forks its workers;
//! the test sends real signals and real requests over loopback, and reads what the child
//! prints: `serving on ADDR` once the first worker is ready (from `Prefork::on_ready`), a
//! `board` line on every scoreboard change (from `on_change`), and the supervisor's log on
//! stderr.

#[path = "util/load.rs"]
mod load;
mod util;

use std::collections::HashSet;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::prefork::{Prefork, Scoreboard, WorkerState};
use socketserver::{
    HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading,
};
use util::child::{exit_status, lines_of};

use load::Load;

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(30);

/// Echoes one line, then closes; `hang` hangs the worker's serving loop (with `Serial`).
#[derive(Handler)]
struct Echo;

impl StreamRequestHandler for Echo {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        if line == "hang\n" {
            loop {
                std::thread::park();
            }
        }
        request.wfile.write_all(line.as_bytes())?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The child: a supervisor that reports on stdout

fn is_child(name: &str) -> bool {
    std::env::var("PREFORK_CHILD").as_deref() == Ok(name)
}

/// A TCP server of [`Echo`] on threads, with short timeouts, for the workers to inherit.
fn threading_server() -> TcpServer<Echo, Threading> {
    TcpServer::<Echo>::builder()
        .strategy(Threading::new())
        .poll_interval(Duration::from_millis(50))
        .read_timeout(Some(Duration::from_secs(10)))
        .write_timeout(Some(Duration::from_secs(10)))
        .max_connections(Some(256))
        .bind("127.0.0.1:0")
        .expect("bind")
}

/// In the child: runs `prefork` printing `serving on`, `board` and `exit` lines, then the
/// report (or the error, exiting with status 3).
fn supervise<T, H, S>(prefork: Prefork<T, H, S>)
where
    T: socketserver::transport::Transport,
    H: Handler,
    S: socketserver::Strategy,
{
    let _ = env_logger::builder()
        .parse_filters("socketserver::prefork=info")
        .try_init();
    let mut seen = HashSet::new();
    let served = prefork
        .on_ready(|address| say(&format!("serving on {address}")))
        .on_change(move |board| {
            for exit in &board.exits {
                if seen.insert(exit.id) {
                    say(&format!("exit {} {} {}", exit.id, exit.pid, exit.reason));
                }
            }
            say(&board_line(board));
        })
        .serve();
    match served {
        Ok(report) => say(&format!(
            "report started={} crashed={} killed={}",
            report.stats.started, report.stats.crashed, report.killed
        )),
        Err(e) => {
            say(&format!("error: {e}"));
            std::process::exit(3);
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `board id:pid:state ...`
fn board_line(board: &Scoreboard) -> String {
    let mut line = String::from("board");
    for w in &board.workers {
        line.push_str(&format!(" {}:{}:{}", w.id, w.pid, w.state));
    }
    line
}

// ---------------------------------------------------------------------------------------------
// The test's side

/// One worker on a `board` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: u64,
    pid: i32,
    state: String,
}

type Board = Vec<Row>;

fn parse_board(line: &str) -> Board {
    line.split_whitespace()
        .filter_map(|w| {
            let mut parts = w.split(':');
            Some(Row {
                id: parts.next()?.parse().ok()?,
                pid: parts.next()?.parse().ok()?,
                state: parts.next()?.to_owned(),
            })
        })
        .collect()
}

fn ready_pids(board: &Board) -> HashSet<i32> {
    board
        .iter()
        .filter(|r| r.state == WorkerState::Ready.to_string())
        .map(|r| r.pid)
        .collect()
}

/// The supervisor in a child process, with its stdout and stderr lines on channels.
struct Supervisor {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    address: SocketAddr,
    /// The last board seen.
    board: Board,
}

impl Supervisor {
    /// Starts test `name`'s child, waits for `serving on`.
    fn start(name: &str) -> Supervisor {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("PREFORK_CHILD", name)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the child");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        let mut supervisor = Supervisor {
            child,
            stdout,
            stderr,
            address: "127.0.0.1:1".parse().expect("an address"),
            board: Vec::new(),
        };
        let serving = supervisor.line("serving on ");
        supervisor.address = serving.trim().parse().expect("a socket address");
        supervisor
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the supervisor");
    }

    /// Waits for a stdout line with `prefix`, keeping the boards it passes; what follows.
    fn line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let line = self
                .stdout
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no {prefix:?} line within {STEP:?}"));
            if let Some((_, rest)) = line.split_once("board") {
                self.board = parse_board(rest);
            }
            if let Some((_, rest)) = line.split_once(prefix) {
                return rest.to_owned();
            }
        }
    }

    /// Waits until a board satisfies `condition`; returns it.
    fn board_where(&mut self, what: &str, mut condition: impl FnMut(&Board) -> bool) -> Board {
        let deadline = Instant::now() + STEP;
        while !condition(&self.board) {
            let line = self.stdout.recv_deadline(deadline).unwrap_or_else(|_| {
                panic!(
                    "no board with {what} within {STEP:?}: last {:?}",
                    self.board
                )
            });
            if let Some((_, rest)) = line.split_once("board") {
                self.board = parse_board(rest);
            }
        }
        self.board.clone()
    }

    /// Waits until `n` workers are ready and none is starting or draining.
    fn settled(&mut self, n: usize) -> HashSet<i32> {
        let board = self.board_where(&format!("{n} ready workers"), |b| {
            b.len() == n && ready_pids(b).len() == n
        });
        ready_pids(&board)
    }

    /// Waits for a stderr line holding `text`; the line.
    fn log(&self, text: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let line = self
                .stderr
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no log line with {text:?} within {STEP:?}"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// SIGTERM, then the child's exit status and its `report` line.
    fn stop(mut self) -> String {
        self.signal(Signal::SIGTERM);
        let report = self.line("report ");
        let status = exit_status(&mut self.child);
        assert!(status.success(), "{status:?}");
        report
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids of `pid`'s children (over all its threads: the supervisor forks from the test
/// thread of its process).
fn children_of(pid: Pid) -> HashSet<i32> {
    let mut children = HashSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    children
}

/// Whether `pid` is gone or a zombie.
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// One request on a new connection: the echoed line.
fn echo(addr: SocketAddr, line: &str) -> String {
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(STEP)).expect("timeout");
    client
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    client.read_to_string(&mut reply).expect("reply");
    reply
}

fn report(what: &str, counts: &load::Counts) {
    eprintln!(
        "{what}: sent {} failed {} (bound 0) {:?}",
        counts.sent, counts.failed, counts.errors
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

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
fn kill_9_of_a_worker_under_load_loses_at_most_its_requests_in_flight() {
    const NAME: &str = "kill_9_of_a_worker_under_load_loses_at_most_its_requests_in_flight";
    const CLIENTS: usize = 8;
    if is_child(NAME) {
        supervise(Prefork::new(threading_server()).workers(2));
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let pids = supervisor.settled(2);
    let load = Load::start(supervisor.address, CLIENTS);
    assert!(load.wait_for(200), "the load runs");
    let victim = *pids.iter().next().expect("a worker");
    let killed = Instant::now();
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");
    let board = supervisor.board_where("a replacement ready", |b| {
        let ready = ready_pids(b);
        ready.len() == 2 && !ready.contains(&victim)
    });
    let took = killed.elapsed();
    assert!(load.wait_for(200), "the replacement serves");
    let counts = load.stop();
    eprintln!(
        "kill -9 of worker {victim}: replacement ready after {took:?} (bound 5s); sent {} lost {} \
         (bound {CLIENTS}: the requests in flight on that worker)",
        counts.sent, counts.failed
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(counts.failed <= CLIENTS as u64, "{:?}", counts.errors);
    assert!(ready_pids(&board).is_superset(&(&pids - &HashSet::from([victim]))));
    supervisor.log(&format!("(pid {victim}) killed by SIGKILL"));
    supervisor.stop();
}

#[test]
fn kill_9_of_the_supervisor_takes_every_worker_with_it_within_a_second() {
    const NAME: &str = "kill_9_of_the_supervisor_takes_every_worker_with_it_within_a_second";
    if is_child(NAME) {
        supervise(Prefork::new(threading_server()).workers(3));
        return;
    }
    // The orphaned workers come to this process (PID 1 here does not reap), to be reaped
    // and checked.
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    let mut supervisor = Supervisor::start(NAME);
    let pids = supervisor.settled(3);
    assert_eq!(echo(supervisor.address, "hello"), "hello\n");
    kill(supervisor.pid(), Signal::SIGKILL).expect("kill -9");
    let killed = Instant::now();
    supervisor.child.wait().expect("reap the supervisor");
    let gone = util::eventually(Duration::from_secs(1), || pids.iter().all(|&p| is_dead(p)));
    let took = killed.elapsed();
    eprintln!("every worker gone {took:?} after kill -9 of the supervisor (bound 1s)");
    assert!(
        gone,
        "workers alive 1 s after their supervisor died: {pids:?}"
    );
    for &pid in &pids {
        // Reaped here (they are zombies of this subreaper), or already by someone else.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        assert!(
            std::fs::metadata(format!("/proc/{pid}")).is_err(),
            "worker {pid} left behind"
        );
    }
    assert!(
        TcpStream::connect(supervisor.address).is_err(),
        "nobody holds the port"
    );
}

/// The child of a test whose supervisor never gets to `serving on`.
fn start_unready(name: &str) -> (Child, Receiver<String>, Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("PREFORK_CHILD", name)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    (child, stdout, stderr)
}

#[test]
fn a_worker_whose_set_up_fails_stops_the_server_with_its_error() {
    const NAME: &str = "a_worker_whose_set_up_fails_stops_the_server_with_its_error";
    if is_child(NAME) {
        supervise(
            Prefork::new(threading_server())
                .workers(2)
                .on_worker_start(|_| Err("cannot read /nonexistent/app.conf".into())),
        );
        return;
    }
    let (mut child, stdout, stderr) = start_unready(NAME);
    let status = exit_status(&mut child);
    let out: Vec<String> = stdout.iter().collect();
    let err: Vec<String> = stderr.iter().collect();
    let error = out
        .iter()
        .find(|l| l.contains("error: "))
        .expect("the error line");
    assert!(
        error.contains("failed to start: cannot read /nonexistent/app.conf"),
        "{error}"
    );
    assert_eq!(status.code(), Some(3), "{status:?}");
    let started = err.iter().filter(|l| l.contains("started worker")).count();
    eprintln!("boot error: {started} workers started (bound 2: no respawn loop)");
    assert!((1..=2).contains(&started), "{err:#?}");
}

/// Reads a `Duration`'s debug form: `100ms`, `1.6s`.
fn parse_delay(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_secs_f64(ms.parse::<f64>().expect("ms") / 1000.0)
    } else {
        Duration::from_secs_f64(text.trim_end_matches('s').parse().expect("s"))
    }
}

#[test]
fn a_crash_loop_backs_off_with_growing_delays() {
    const NAME: &str = "a_crash_loop_backs_off_with_growing_delays";
    if is_child(NAME) {
        supervise(
            Prefork::new(threading_server())
                .workers(1)
                .on_worker_start(|_| {
                    // Dies at once, before serving, by a signal: a crash, not a boot error.
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                    Ok(())
                }),
        );
        return;
    }
    let (mut child, _stdout, stderr) = start_unready(NAME);
    let deadline = Instant::now() + STEP;
    let mut delays = Vec::new();
    while delays.len() < 5 {
        let line = stderr.recv_deadline(deadline).expect("a respawn line");
        if let Some((_, rest)) = line.split_once("respawning in ") {
            delays.push(parse_delay(
                rest.split_whitespace().next().expect("a delay"),
            ));
        }
    }
    eprintln!("crash loop: respawn delays {delays:?} (doubling from 100ms, bound 10s)");
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "{delays:?}");
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert!(exit_status(&mut child).success());
}

/// Set by `on_reload` in the child: workers started after it never become ready.
static HANG_NEW_WORKERS: AtomicBool = AtomicBool::new(false);

#[test]
fn a_reload_whose_worker_never_becomes_ready_rolls_back() {
    const NAME: &str = "a_reload_whose_worker_never_becomes_ready_rolls_back";
    if is_child(NAME) {
        supervise(
            Prefork::new(threading_server())
                .workers(2)
                .heartbeat_timeout(Duration::from_secs(1))
                .on_reload(|| {
                    HANG_NEW_WORKERS.store(true, Ordering::SeqCst);
                    Ok(())
                })
                .on_worker_start(|_| {
                    while HANG_NEW_WORKERS.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    Ok(())
                }),
        );
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let old = supervisor.settled(2);
    let load = Load::start(supervisor.address, 8);
    assert!(load.wait_for(200), "the load runs");
    supervisor.signal(Signal::SIGHUP);
    let rolled_back = supervisor.log("reload rolled back");
    assert!(
        rolled_back.contains("the old workers keep serving"),
        "{rolled_back}"
    );
    let after = supervisor.settled(2);
    assert_eq!(after, old, "the old workers keep serving");
    assert!(load.wait_for(200), "and serve");
    let counts = load.stop();
    report(
        "SIGHUP with a replacement that never becomes ready",
        &counts,
    );
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    supervisor.stop();
}

#[test]
fn a_silent_worker_is_aborted_after_the_heartbeat_timeout_and_replaced() {
    const NAME: &str = "a_silent_worker_is_aborted_after_the_heartbeat_timeout_and_replaced";
    const TIMEOUT: Duration = Duration::from_secs(1);
    if is_child(NAME) {
        let server = TcpServer::<Echo>::builder()
            .poll_interval(Duration::from_millis(50))
            .read_timeout(Some(Duration::from_secs(10)))
            .write_timeout(Some(Duration::from_secs(10)))
            .max_connections(Some(16))
            .bind("127.0.0.1:0")
            .expect("bind");
        supervise(Prefork::new(server).workers(1).heartbeat_timeout(TIMEOUT));
        return;
    }
    let mut supervisor = Supervisor::start(NAME);
    let old = supervisor.settled(1);
    let victim = *old.iter().next().expect("a worker");
    // The serial worker's loop hangs in this request.
    let mut hung = TcpStream::connect(supervisor.address).expect("connect");
    hung.write_all(b"hang\n").expect("send");
    let hung_at = Instant::now();
    let new = supervisor.board_where("a replacement ready", |b| {
        let ready = ready_pids(b);
        ready.len() == 1 && !ready.contains(&victim)
    });
    let took = hung_at.elapsed();
    let bound = TIMEOUT + Duration::from_secs(3);
    eprintln!(
        "silent worker replaced after {took:?} (heartbeat timeout {TIMEOUT:?}, bound {bound:?})"
    );
    assert!(took >= TIMEOUT && took < bound, "{took:?}");
    supervisor.log("sent no heartbeat within");
    assert_eq!(echo(supervisor.address, "after"), "after\n");
    hung.set_read_timeout(Some(STEP)).expect("timeout");
    assert_eq!(
        hung.read(&mut [0u8; 8]).expect("end of file"),
        0,
        "the hung worker is gone"
    );
    assert!(is_dead(victim));
    assert!(!ready_pids(&new).contains(&victim));
    supervisor.stop();
}

/// Answers each datagram with itself.
#[derive(Handler)]
struct EchoDatagram;

impl socketserver::DatagramRequestHandler for EchoDatagram {
    fn handle(&mut self, request: &mut socketserver::DatagramRequest<'_>) -> HandleResult {
        let packet = request.packet().to_vec();
        request.wfile.extend_from_slice(&packet);
        Ok(())
    }
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
