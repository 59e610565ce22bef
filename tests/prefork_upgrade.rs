//! SIGUSR2, the binary upgrade, in real processes (see tests/prefork.rs for how the children
//! work): the supervisor re-runs its program (this test binary, with the same arguments and
//! environment, so the same test's child side runs again) with the listening socket as fd 3
//! (`LISTEN_FDS`); the child side adopts it when it is passed. The orphaned new supervisor
//! comes to this process, made a subreaper, to be stopped and reaped.

#[path = "util/prefork.rs"]
mod harness;
#[path = "util/load.rs"]
mod load;
mod util;

use std::time::Duration;

use harness::*;
use load::Load;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use socketserver::prefork::Prefork;
use socketserver::systemd::ListenFds;
use socketserver::{TcpServer, Threading};

/// The child side: adopts the socket of an upgrade (or binds one), says which generation it
/// is, and supervises 2 workers; `heartbeat` bounds how long an upgrade may take.
/// `PREFORK_UPGRADE_COUNT` names a file counting the new programs started: the `n`th one
/// does what the `n`th word of `PREFORK_UPGRADE_PLAN` says (`serve`, `exit`, `hang`).
fn child(heartbeat: Duration) {
    let mut passed = ListenFds::from_env().expect("LISTEN_FDS");
    let builder = TcpServer::<Echo>::builder()
        .strategy(Threading::new())
        .poll_interval(Duration::from_millis(50))
        .read_timeout(Some(Duration::from_secs(10)))
        .write_timeout(Some(Duration::from_secs(10)))
        .max_connections(Some(256));
    let server = match passed.take_tcp(None).expect("a TCP listener") {
        Some(listener) => {
            let count = std::env::var("PREFORK_UPGRADE_COUNT").expect("count file");
            let n = std::fs::read_to_string(&count)
                .map_or(0, |t| t.trim().parse::<usize>().unwrap_or(0))
                + 1;
            std::fs::write(&count, n.to_string()).expect("count");
            let plan = std::env::var("PREFORK_UPGRADE_PLAN").unwrap_or_default();
            let what = plan.split(',').nth(n - 1).unwrap_or("serve").to_owned();
            say(&format!("generation {n} pid {} {what}", std::process::id()));
            match what.as_str() {
                "exit" => std::process::exit(7),
                "hang" => loop {
                    std::thread::park();
                },
                _ => builder.from_listener(listener).expect("adopt"),
            }
        }
        None => builder.bind("127.0.0.1:0").expect("bind"),
    };
    supervise(Prefork::new(server).workers(2).heartbeat_timeout(heartbeat));
}

fn start(name: &str, plan: &str, dir: &tempfile::TempDir) -> Supervisor {
    // The new supervisor is orphaned when the old one exits: it comes to this process.
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    let count = dir.path().join("count");
    Supervisor::start_with(
        name,
        &[
            ("PREFORK_UPGRADE_COUNT", count.to_str().expect("UTF-8")),
            ("PREFORK_UPGRADE_PLAN", plan),
        ],
    )
}

#[test]
fn sigusr2_upgrades_to_a_new_program_under_load_without_a_failed_request() {
    const NAME: &str = "sigusr2_upgrades_to_a_new_program_under_load_without_a_failed_request";
    if is_child(NAME) {
        child(Duration::from_secs(20));
        return;
    }
    let dir = util::temp_dir();
    let mut old = start(NAME, "serve", &dir);
    let old_workers = old.settled(2);
    let load = Load::start(old.address, 8);
    assert!(load.wait_for(200), "the load runs");

    old.signal(Signal::SIGUSR2);
    let new_pid: i32 = old
        .line("generation 1 pid ")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the new program's pid");
    assert_ne!(new_pid, old.pid().as_raw());
    // The new program serves the same address, announced by its own supervisor.
    let address = old.line("serving on ");
    assert_eq!(address.trim(), old.address.to_string());
    old.log(&format!("the new program (pid {new_pid}) is ready"));
    // The old supervisor drains its workers and exits 0, reporting the hand-over.
    let last = old.line("report ");
    assert!(last.contains("crashed=0"), "{last}");
    let status = util::child::exit_status(&mut old.child);
    assert!(status.success(), "the old supervisor: {status:?}");
    assert!(old_workers.iter().all(|&pid| is_dead(pid)));
    // Only the new program's workers serve now.
    assert!(load.wait_for(300), "the new program serves");
    let counts = load.stop();
    report("SIGUSR2 upgrade", &counts);
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    let new_workers = children_of(Pid::from_raw(new_pid));
    assert_eq!(new_workers.len(), 2, "{new_workers:?}");
    assert_eq!(echo(old.address, "after"), "after\n");

    // The new supervisor stops on SIGTERM like any other.
    kill(Pid::from_raw(new_pid), Signal::SIGTERM).expect("SIGTERM the new supervisor");
    let last = old.line("report ");
    assert!(last.contains("crashed=0"), "{last}");
    let status = waitpid(Pid::from_raw(new_pid), None).expect("reap the new supervisor");
    assert_eq!(status, WaitStatus::Exited(Pid::from_raw(new_pid), 0));
    for pid in new_workers {
        assert!(
            util::eventually(Duration::from_secs(5), || is_dead(pid)),
            "worker {pid} outlived the new supervisor"
        );
    }
}

#[test]
fn a_failed_upgrade_leaves_the_old_supervisor_serving_under_load() {
    const NAME: &str = "a_failed_upgrade_leaves_the_old_supervisor_serving_under_load";
    if is_child(NAME) {
        child(Duration::from_secs(2));
        return;
    }
    let dir = util::temp_dir();
    let mut old = start(NAME, "exit,hang", &dir);
    let workers = old.settled(2);
    let load = Load::start(old.address, 8);
    assert!(load.wait_for(200), "the load runs");

    // The first new program exits at once: the old one says so and keeps serving.
    old.signal(Signal::SIGUSR2);
    old.log("exited with status 7; this one keeps serving");
    assert!(load.wait_for(200));

    // The second hangs: a second SIGUSR2 meanwhile is ignored; at the 2 s deadline the new
    // program is killed.
    old.signal(Signal::SIGUSR2);
    let hung: i32 = old
        .line("generation 2 pid ")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the new program's pid");
    old.signal(Signal::SIGUSR2);
    old.log("SIGUSR2 received while an upgrade runs");
    old.log("was not ready in time; killed; this one keeps serving");
    assert!(is_dead(hung), "the hung program {hung} was not killed");
    assert!(load.wait_for(200));
    let counts = load.stop();
    report("failed upgrades (one exits, one hangs)", &counts);
    assert_eq!(counts.failed, 0, "{:?}", counts.errors);
    assert_eq!(ready_pids(&old.board), workers, "the same workers serve");
    let last = old.stop();
    assert!(last.contains("crashed=0"), "{last}");
}
