//! The prefork supervisor facing failures, in real processes (see tests/prefork.rs for how the
//! children work): workers killed, a supervisor killed, workers that cannot start, crash,
//! hang, or never become ready on a reload.

#[path = "util/prefork.rs"]
mod harness;
#[path = "util/load.rs"]
mod load;
mod util;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use harness::*;
use load::Load;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::prefork::Prefork;
use socketserver::TcpServer;
use util::child::{exit_status, lines_of};

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
