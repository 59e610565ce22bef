//! Faults met by a server in a process of its own (this test binary, run again as a child):
//! `accept` failing with `EMFILE` under a lowered `RLIMIT_NOFILE`, `SIGPIPE` left at its default
//! action, the CPU a loop uses while it waits at the connection cap, and forked children
//! meeting faulty clients.

mod util;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{signal, SigHandler, Signal};
use socketserver::{Forking, Strategy, TcpServer, Threading, UnixStreamServer};
use util::child::{exit_status, line_after, lines_of};
use util::faulty::{echo, fault_scenarios, reset, Faulty, FAULT_OUTCOMES};
use util::isolation::shared;
use util::{serve, tcp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Child processes: the cap, SIGPIPE, forking, and accept failing with EMFILE

/// Runs the child side of a test in a process of its own, when `FAULTS_CHILD` names one; as an
/// ordinary test it does nothing.
#[test]
fn child_process() {
    match std::env::var("FAULTS_CHILD").as_deref() {
        Ok("emfile") => emfile_child(),
        Ok("forking") => forking_child(),
        Ok("sigpipe") => sigpipe_child(),
        Ok("cap") => cap_child(),
        _ => {}
    }
}

/// The child: a threading server of [`Faulty`] with `max_connections(1)`, until stdin closes.
fn cap_child() {
    let running = serve(
        TcpServer::<Faulty>::builder()
            .strategy(Threading::new())
            .max_connections(Some(1))
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    println!("ready {}", running.inet());
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    running.stop().close();
}

/// At the cap, the serving loop sleeps: a client waiting in the backlog for a second costs
/// the server process (almost) no CPU, and is served as soon as the open request ends.
#[test]
fn max_connections_waits_without_spinning() {
    let _shared = shared();
    let mut child = spawn_child("cap");
    let lines = lines_of(child.stdout.take().unwrap());
    let addr: SocketAddr = line_after(&lines, "ready ").parse().unwrap();
    let pid = child.id();

    let mut holding = tcp_client(addr);
    holding.write_all(b"echo\nx").unwrap();
    let mut x = [0u8; 1];
    holding.read_exact(&mut x).unwrap();

    let mut waiting = tcp_client(addr);
    waiting.write_all(b"echo\nping").unwrap();
    waiting.shutdown(Shutdown::Write).unwrap();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let waited = waiting.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{waited}"
    );
    let share = (cpu_ticks(pid) - before) as f64 / 100.0 / started.elapsed().as_secs_f64();
    assert!(
        share < 0.2,
        "the server used {:.0}% of a core at the cap",
        share * 100.0
    );

    drop(holding);
    waiting.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = String::new();
    waiting.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "ping");

    drop(child.stdin.take());
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
}

/// The child: with `SIGPIPE` back at its default action (death), threading servers of
/// [`Faulty`] on TCP and on a Unix socket, until stdin closes.
fn sigpipe_child() {
    // SAFETY: SIG_DFL runs no code of ours; the test's threads are not using signals.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.unwrap();
    let dir = util::temp_dir();
    let path = dir.path().join("faulty.sock");
    let tcp = serve(
        TcpServer::<Faulty>::builder()
            .strategy(Threading::new())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let unix = serve(
        UnixStreamServer::<Faulty>::builder()
            .strategy(Threading::new())
            .bind(&path)
            .unwrap(),
    );
    println!("ready {} {}", tcp.inet(), path.display());
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    tcp.stop().close();
    unix.stop().close();
}

/// A program that has not ignored `SIGPIPE` survives clients that vanish while it writes, on
/// TCP and on Unix sockets (where `write(2)` would raise it: the library sends with
/// `MSG_NOSIGNAL`).
#[test]
fn no_sigpipe_death_even_when_not_ignored() {
    let _shared = shared();
    let mut child = spawn_child("sigpipe");
    let lines = lines_of(child.stdout.take().unwrap());
    let ready = line_after(&lines, "ready ");
    let (tcp, path) = ready.split_once(' ').unwrap();
    let tcp: SocketAddr = tcp.parse().unwrap();

    for _ in 0..3 {
        let mut client = tcp_client(tcp);
        client.write_all(b"flood\n").unwrap();
        let mut first = vec![0u8; 64 * 1024];
        client.read_exact(&mut first).unwrap();
        reset(client);

        for command in ["flood\n", "floodv\n"] {
            let mut client = std::os::unix::net::UnixStream::connect(path).unwrap();
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            client.write_all(command.as_bytes()).unwrap();
            client.read_exact(&mut first).unwrap();
            drop(client);
        }

        let mut client = tcp_client(tcp);
        client.write_all(b"floodv\n").unwrap();
        client.read_exact(&mut first).unwrap();
        reset(client);
    }
    assert_eq!(echo(tcp, "alive"), "alive");
    let mut client = std::os::unix::net::UnixStream::connect(path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"echo\nalive").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "alive");

    drop(child.stdin.take());
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
}

/// The child: a forking server of [`Faulty`] until stdin closes; then it prints how its
/// children exited.
fn forking_child() {
    let server = TcpServer::<Faulty>::builder()
        .strategy(Forking::new())
        .bind("127.0.0.1:0")
        .unwrap();
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    println!("ready {}", running.inet());
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    assert_eq!(running.stop().close().abandoned, 0);
    println!("outcomes {} {}", activity.succeeded(), activity.failed());
    io::stdout().flush().unwrap();
}

/// Forked children survive the faults too, and none dies of SIGPIPE: the flood child exits
/// with status 0 (one killed by a signal would count as failed). The server runs in a process
/// of its own, so that its children do not inherit the test's client sockets (a child holding
/// a copy of a client's socket would keep the connection open after the client resets it).
#[test]
fn forking_survives_faults() {
    let _shared = shared();
    let mut child = spawn_child("forking");
    let lines = lines_of(child.stdout.take().unwrap());
    let addr: SocketAddr = line_after(&lines, "ready ").parse().unwrap();
    fault_scenarios(addr);
    drop(child.stdin.take());
    let outcomes = line_after(&lines, "outcomes ");
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
    let (succeeded, failed) = FAULT_OUTCOMES;
    assert_eq!(outcomes, format!("{succeeded} {failed}"));
}

/// Starts this test binary as a child running `mode`.
fn spawn_child(mode: &str) -> std::process::Child {
    spawn_child_logging(mode, "warn")
}

/// [`spawn_child`] with `RUST_LOG` set to `filter`.
fn spawn_child_logging(mode: &str, filter: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FAULTS_CHILD", mode)
        .env("RUST_LOG", filter)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A process's user and system CPU time, in clock ticks (`/proc/<pid>/stat`, fields 14 and 15;
/// always 100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command name, field 3 is at index 0.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The child: a threading echo server that runs out of descriptors. It lowers its soft
/// `RLIMIT_NOFILE` to just above its highest descriptor and fills every free number, so
/// `accept` fails with `EMFILE`. On "free one" from stdin it says so on stderr and closes one
/// spare descriptor; on "free" it restores the limit.
fn emfile_child() {
    let _ = env_logger::builder()
        .target(env_logger::Target::Stderr)
        .parse_default_env()
        .try_init();
    let server = TcpServer::<Faulty>::builder()
        .strategy(Threading::new())
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, highest + 1, hard).unwrap();
    let mut spare = Vec::new();
    for _ in 0..=highest {
        match std::fs::File::open("/dev/null") {
            Ok(file) => spare.push(file),
            Err(_) => break,
        }
    }
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "no descriptor left"
    );
    println!("ready {}", running.inet());
    io::stdout().flush().unwrap();
    let mut stdin = BufReader::new(io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line, "free one\n");
    eprintln!("freeing one");
    drop(spare.pop());
    line.clear();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line, "free\n");
    // In one step, so that the test knows when the shortage ends.
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    // Until the test closes stdin.
    while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {}
    running.stop().close();
    drop(spare);
}

/// Python's open problem: `accept` fails with `EMFILE` while the listening socket stays
/// readable. The server logs it, backs off without spinning, and serves again once
/// descriptors are free. A server hovering at the limit (each descriptor freed is taken at
/// once, and the next `accept` fails again) is one shortage: one warning, not one per request.
#[test]
fn accept_emfile_is_logged_backed_off_and_recovered() {
    let _shared = shared();
    let mut child = spawn_child_logging("emfile", "warn,socketserver::accept=debug");
    let lines = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let mut log = Vec::new();
    // Waits for the child's next stderr line that contains `text`, keeping every line.
    let mut logged = |text: &str| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let Ok(line) = stderr.recv_deadline(deadline) else {
                panic!("no {text:?} in the child's log: {log:#?}");
            };
            let found = line.contains(text);
            log.push(line);
            if found {
                return;
            }
        }
    };
    let addr: SocketAddr = line_after(&lines, "ready ").parse().unwrap();
    let pid = child.id();

    // The connection completes in the kernel and waits for an `accept` that keeps failing.
    let mut client = tcp_client(addr);
    client.write_all(b"echo\nping").unwrap();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    // The measuring window: a second in which the request must not be served.
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let waited = client.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{waited}"
    );
    let used = (cpu_ticks(pid) - before) as f64 / 100.0;
    let share = used / started.elapsed().as_secs_f64();
    assert!(
        share < 0.2,
        "the server used {:.0}% of a core while accept failed",
        share * 100.0
    );

    // One descriptor frees up: the waiting client takes it and is served (its handler keeps
    // the descriptor while the client keeps its side open), and `accept` fails again: at once
    // (Linux looks for a descriptor before it looks at the queue), and again for a second
    // client while it waits. Every attempt after the descriptor is freed, but one that may
    // have started before, comes after the first client was taken: two failures logged
    // after "freeing one" mean at least one came after a request was taken.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"free one\n").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ping");
    let mut second = tcp_client(addr);
    second.write_all(b"echo\npong").unwrap();
    second.shutdown(Shutdown::Write).unwrap();
    logged("freeing one");
    logged("os error 24");
    logged("os error 24");

    // Descriptors free up: a new client is served at once, and the loop, having caught up,
    // says that the shortage is over.
    stdin.write_all(b"free\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    client.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    let mut pong = String::new();
    second.read_to_string(&mut pong).unwrap();
    assert_eq!(pong, "pong");
    assert_eq!(echo(addr, "third"), "third");
    logged("taking requests again");

    drop(stdin);
    let status = exit_status(&mut child);
    log.extend(stderr.iter());
    assert!(status.success(), "{status}: {log:#?}");
    // Once, however many attempts failed, before and after the one descriptor was freed.
    let warnings = log
        .iter()
        .filter(|l| l.contains("WARN  socketserver::accept") && l.contains("os error 24"))
        .count();
    assert_eq!(warnings, 1, "{log:#?}");
}
