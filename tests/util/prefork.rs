//! The prefork tests' harness: the child's side (a supervisor that prints `serving on`,
//! `board` and `exit` lines) and the test's side (a [`Supervisor`] child process, watched
//! through those lines, /proc and its log). Included by tests/prefork*.rs with
//! `#[path = "util/prefork.rs"] mod harness;` beside `mod util;`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::prefork::{Prefork, Scoreboard, WorkerState};
use socketserver::{
    HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading,
};

use crate::load;
use crate::util::child::{exit_status, lines_of};

/// How long any one step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// Echoes one line, then closes; `hang` hangs the worker's serving loop (with `Serial`).
#[derive(Handler)]
pub struct Echo;

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

pub fn is_child(name: &str) -> bool {
    std::env::var("PREFORK_CHILD").as_deref() == Ok(name)
}

/// A TCP server of [`Echo`] on threads, with short timeouts, for the workers to inherit.
pub fn threading_server() -> TcpServer<Echo, Threading> {
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
pub fn supervise<T, H, S>(prefork: Prefork<T, H, S>)
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

pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `board id:pid:state ...`
pub fn board_line(board: &Scoreboard) -> String {
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
pub struct Row {
    pub id: u64,
    pub pid: i32,
    pub state: String,
}

pub type Board = Vec<Row>;

pub fn parse_board(line: &str) -> Board {
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

pub fn ready_pids(board: &Board) -> HashSet<i32> {
    board
        .iter()
        .filter(|r| r.state == WorkerState::Ready.to_string())
        .map(|r| r.pid)
        .collect()
}

/// The supervisor in a child process, with its stdout and stderr lines on channels.
pub struct Supervisor {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    pub address: SocketAddr,
    /// The last board seen.
    pub board: Board,
}

impl Supervisor {
    /// Starts test `name`'s child, waits for `serving on`.
    pub fn start(name: &str) -> Supervisor {
        Supervisor::start_with(name, &[])
    }

    /// Starts test `name`'s child with `env` added to its environment, waits for
    /// `serving on`.
    pub fn start_with(name: &str, env: &[(&str, &str)]) -> Supervisor {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("PREFORK_CHILD", name)
            .envs(env.iter().copied())
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

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the supervisor");
    }

    /// Waits for a stdout line with `prefix`, keeping the boards it passes; what follows.
    pub fn line(&mut self, prefix: &str) -> String {
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
    pub fn board_where(&mut self, what: &str, mut condition: impl FnMut(&Board) -> bool) -> Board {
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
    pub fn settled(&mut self, n: usize) -> HashSet<i32> {
        let board = self.board_where(&format!("{n} ready workers"), |b| {
            b.len() == n && ready_pids(b).len() == n
        });
        ready_pids(&board)
    }

    /// Waits for a stderr line holding `text`; the line.
    pub fn log(&self, text: &str) -> String {
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
    pub fn stop(mut self) -> String {
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
pub fn children_of(pid: Pid) -> HashSet<i32> {
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
pub fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// One request on a new connection: the echoed line.
pub fn echo(addr: SocketAddr, line: &str) -> String {
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_read_timeout(Some(STEP)).expect("timeout");
    client
        .write_all(format!("{line}\n").as_bytes())
        .expect("send");
    let mut reply = String::new();
    client.read_to_string(&mut reply).expect("reply");
    reply
}

pub fn report(what: &str, counts: &load::Counts) {
    eprintln!(
        "{what}: sent {} failed {} (bound 0) {:?}",
        counts.sent, counts.failed, counts.errors
    );
}

/// Answers each datagram with itself.
#[derive(Handler)]
pub struct EchoDatagram;

impl socketserver::DatagramRequestHandler for EchoDatagram {
    fn handle(&mut self, request: &mut socketserver::DatagramRequest<'_>) -> HandleResult {
        let packet = request.packet().to_vec();
        request.wfile.extend_from_slice(&packet);
        Ok(())
    }
}
