//! SIGUSR2, the binary upgrade: the supervisor forks a child that execs the program again
//! with the listening socket handed over in systemd's `LISTEN_FDS` format, waits for the new
//! program to say its first worker is ready, then drains its own workers and returns; if the
//! new program exits or is not ready in time, it is killed and the old one keeps serving.
//!
//! The new program says it is ready by writing one byte to a pipe whose descriptor is in
//! [`READY_FD`]; [`take_ready_pipe`] (in the new program's [`Prefork::serve`](super::Prefork))
//! takes it and unsets the variable. The metrics listener, if there is one, is handed over
//! too, in [`METRICS_FD`]: one socket that both programs hold, so a scrape queued while the
//! old one lets go waits for the new one instead of being reset (a socket of a
//! `SO_REUSEPORT` group that closes resets what is queued on it).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::signals::pipe;
use crate::sys::{process, signal};

const TARGET: &str = "socketserver::prefork";

/// The environment variable that names the pipe on which the new program says "ready".
pub const READY_FD: &str = "SOCKETSERVER_UPGRADE_FD";

/// The environment variable that names the metrics listener
/// ([`Prefork::metrics`](super::Prefork::metrics)) an upgrade hands to the new program.
///
/// Like the pipe of [`READY_FD`], the descriptor survives `exec` until the new program's
/// [`Prefork::metrics`](super::Prefork::metrics) (or its supervisor) takes it: a program that
/// starts other programs before that passes it on to them.
pub const METRICS_FD: &str = "SOCKETSERVER_METRICS_FD";

/// The program to run again: its executable and arguments, read when the supervisor starts.
#[derive(Debug)]
pub(super) struct Program {
    exe: PathBuf,
    argv: Vec<CString>,
}

impl Program {
    /// This program: the path `/proc/self/exe` names now, and the arguments it was given.
    ///
    /// The path, not `/proc/self/exe` itself, is what the upgrade runs: a binary replaced at
    /// that path (the point of an upgrade) is the one that starts, where `/proc/self/exe`
    /// would still be the old, deleted file.
    pub(super) fn current() -> io::Result<Program> {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let argv = std::env::args_os()
            .map(|a| CString::new(a.into_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        Ok(Program { exe, argv })
    }
}

/// An upgrade in progress: the new program, and the pipe it says "ready" on.
#[derive(Debug)]
pub(super) struct Upgrade {
    pid: Pid,
    ready: OwnedFd,
    deadline: Instant,
}

/// Where an upgrade is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Not ready yet.
    Waiting,
    /// The new program's first worker is ready.
    Ready(Pid),
    /// It failed (why): the new program is gone.
    Failed(String),
}

/// The sockets an upgrade hands to the new program.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sockets<'a> {
    /// The listening socket, fd 3 (`LISTEN_FDS=1`), named `name` in `LISTEN_FDNAMES`.
    pub(super) listener: BorrowedFd<'a>,
    pub(super) name: &'a str,
    /// The metrics listener, named by [`METRICS_FD`].
    pub(super) metrics: Option<BorrowedFd<'a>>,
}

/// Starts the new program: `program` with `sockets` and the ready pipe in [`READY_FD`]. The
/// supervisor is single-threaded (the fork rules).
pub(super) fn start(
    program: &Program,
    sockets: Sockets<'_>,
    timeout: Duration,
) -> io::Result<Upgrade> {
    let (ready, tell) = pipe()?;
    // The environment, without the variables the child sets.
    let ours = [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        READY_FD,
        METRICS_FD,
    ];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k == o))
        .filter_map(|(k, v)| {
            let mut pair: OsString = k;
            pair.push("=");
            pair.push(v);
            CString::new(pair.into_vec()).ok()
        })
        .collect();
    env.push(CString::new(format!("LISTEN_FDNAMES={}", sockets.name)).map_err(io::Error::other)?);
    env.push(CString::new("LISTEN_FDS=1").map_err(io::Error::other)?);
    let mask = signal::block_all()?;
    let (listener, tell_fd) = (sockets.listener.as_raw_fd(), tell.as_raw_fd());
    let metrics = sockets.metrics.map(|fd| fd.as_raw_fd());
    // The supervisor is single-threaded (the first case of `sys::process::fork`'s contract).
    let forked = process::fork(|| {
        let code = match exec(program, listener, metrics, tell_fd, env) {
            Ok(never) => match never {},
            Err(e) => {
                log::error!(target: TARGET, "upgrade: cannot run {}: {e}", program.exe.display());
                127
            }
        };
        process::exit_now(code)
    });
    signal::restore_mask(&mask);
    drop(tell);
    let pid = forked?;
    Ok(Upgrade {
        pid,
        ready,
        deadline: crate::sys::deadline_in(timeout),
    })
}

/// In the child: fd 3 is the listener, the ready pipe and the metrics listener survive
/// `exec`, the supervisor's signal handlers are gone and every signal unblocked; then
/// `execve`. Returns only on error.
fn exec(
    program: &Program,
    listener: RawFd,
    metrics: Option<RawFd>,
    tell: RawFd,
    mut env: Vec<CString>,
) -> io::Result<std::convert::Infallible> {
    // Above 3, without close-on-exec.
    let tell = fcntl(tell, FcntlArg::F_DUPFD(10))?;
    if let Some(metrics) = metrics {
        let metrics = fcntl(metrics, FcntlArg::F_DUPFD(10))?;
        env.push(CString::new(format!("{METRICS_FD}={metrics}")).map_err(io::Error::other)?);
    }
    if listener == 3 {
        fcntl(3, FcntlArg::F_SETFD(FdFlag::empty()))?;
    } else {
        // dup2 leaves the new descriptor without close-on-exec.
        nix::unistd::dup2(listener, 3)?;
    }
    env.push(CString::new(format!("{READY_FD}={tell}")).map_err(io::Error::other)?);
    env.push(CString::new(format!("LISTEN_PID={}", std::process::id())).map_err(io::Error::other)?);
    let exe =
        CString::new(program.exe.clone().into_os_string().into_vec()).map_err(io::Error::other)?;
    signal::forget_in_child();
    signal::unblock_all()?;
    Ok(nix::unistd::execve(&exe, &program.argv, &env)?)
}

impl Upgrade {
    /// The new program's pid.
    pub(super) fn pid(&self) -> Pid {
        self.pid
    }

    /// The ready pipe, to `poll(2)`.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    /// When the new program must be ready.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reads the pipe, reaps the new program if it exited, and checks the deadline; a
    /// program late or gone is killed and reaped.
    pub(super) fn check(&mut self) -> Outcome {
        let mut byte = [0u8; 1];
        let closed = loop {
            match nix::unistd::read(self.ready.as_raw_fd(), &mut byte) {
                Ok(1) => return Outcome::Ready(self.pid),
                Ok(_) => break true,
                Err(Errno::EINTR) => {}
                Err(_) => break false,
            }
        };
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Outcome::Failed(describe(status, ""))
            }
            Ok(_) => {}
            Err(e) => return Outcome::Failed(format!("cannot wait for it: {e}")),
        }
        if closed {
            // Usually on its way out: the pipe closes just before the exit can be reaped.
            let status = self.kill();
            return Outcome::Failed(describe(
                status,
                "it closed its ready pipe without a word; killed",
            ));
        }
        if Instant::now() >= self.deadline {
            self.kill();
            return Outcome::Failed("was not ready in time; killed".into());
        }
        Outcome::Waiting
    }

    /// Kills the new program (its workers die with it) and reaps it; how it ended.
    pub(super) fn kill(&self) -> WaitStatus {
        let _ = kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => {}
                Ok(status) => return status,
                Err(_) => return WaitStatus::StillAlive,
            }
        }
    }
}

/// How the new program ended, for the log; `killed` when it was our SIGKILL.
fn describe(status: WaitStatus, killed: &str) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, Signal::SIGKILL, _) if !killed.is_empty() => killed.to_owned(),
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {signal}"),
        _ => "is gone".into(),
    }
}

/// In the new program: the pipe the old supervisor waits on, if this program was started by
/// an upgrade ([`READY_FD`] names an open pipe); the variable is unset either way.
pub(super) fn take_ready_pipe() -> Option<OwnedFd> {
    take_inherited(READY_FD, SFlag::S_IFIFO, "pipe")
}

/// In the new program: the metrics listener the old supervisor handed over, if this program
/// was started by an upgrade that had one ([`METRICS_FD`] names a listening socket); the
/// variable is unset either way. Not close-on-exec until taken: whoever takes it first owns
/// it, and the supervisor takes (and closes) one that [`Prefork::metrics`](super::Prefork::metrics)
/// did not.
pub(super) fn take_metrics_listener() -> Option<OwnedFd> {
    take_inherited(METRICS_FD, SFlag::S_IFSOCK, "socket")
}

/// The descriptor the environment variable `variable` names, if it is open and of file type
/// `kind` (`what`, for the log): then it is the one the old supervisor passed. The variable
/// is unset either way, and the descriptor taken is close-on-exec.
fn take_inherited(variable: &str, kind: SFlag, what: &str) -> Option<OwnedFd> {
    let value = std::env::var_os(variable)?;
    std::env::remove_var(variable);
    let fd: RawFd = value.to_str()?.parse().ok()?;
    if fd < 3 {
        return None;
    }
    let is_kind =
        fstat(fd).is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind);
    if !is_kind {
        log::warn!(target: TARGET, "{variable}={fd} is not an open {what}: ignored");
        return None;
    }
    // Named by the variable just removed, and taken once: the contract of `own_inherited`.
    let fd = process::own_inherited(fd);
    let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Some(fd)
}

/// In the new program: the metrics listener handed over ([`take_metrics_listener`]) if it
/// listens on `address` (port 0 matches any port: the old program's configuration asked for
/// any port too); one on another address is closed (the configuration changed).
#[cfg(feature = "http")]
pub(super) fn inherited_metrics_listener(
    address: &impl std::net::ToSocketAddrs,
) -> Option<std::net::TcpListener> {
    let listener = std::net::TcpListener::from(take_metrics_listener()?);
    let local = listener.local_addr().ok()?;
    let wanted = address.to_socket_addrs().ok()?;
    let matches = wanted
        .into_iter()
        .any(|a| a.ip() == local.ip() && (a.port() == local.port() || a.port() == 0));
    if !matches {
        log::info!(target: TARGET, "the metrics listener handed over listens on {local}, not on the address asked for: closed");
        return None;
    }
    log::info!(target: TARGET, "metrics on {local}: the listener handed over by the old supervisor");
    Some(listener)
}

/// In the new program, once its first worker is ready: tells the old supervisor.
pub(super) fn say_ready(pipe: OwnedFd) {
    if let Err(e) = nix::unistd::write(&pipe, b"R") {
        log::warn!(target: TARGET, "cannot tell the old supervisor this one is ready: {e}");
    }
}
