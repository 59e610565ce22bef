//! Signals in the process model: the supervisor's handlers, which only write the signal's
//! number to a pipe (the self-pipe trick: the supervisor's loop reads it in `poll(2)`), and a
//! worker's, set up in the child right after `fork`.
//!
//! Every signal is blocked across `fork`, so a signal that arrives in between cannot run the
//! supervisor's handler in the child (which would write to the supervisor's pipe). The child
//! sets its own dispositions, then unblocks.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::c_int;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use super::worker::{EXIT_ABORTED, EXIT_STOPPED};

/// The signals the supervisor acts on (see the module docs of [`prefork`](super)).
pub(super) const SUPERVISOR_SIGNALS: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
    Signal::SIGUSR2,
];

/// The writing end of this process's signal pipe, -1 when none. Read by [`to_pipe`].
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn to_pipe(signal: c_int) {
    let saved = Errno::last_raw();
    let fd = PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = u8::try_from(signal).unwrap_or(u8::MAX);
        // SAFETY: `write(2)` is async-signal-safe; `fd` is the pipe's writing end, which is
        // never closed once published (see `SupervisorSignals::drop`); `byte` outlives the
        // call. The pipe is non-blocking: when it is full, a wake-up is pending already.
        let _ = unsafe { nix::libc::write(fd, std::ptr::addr_of!(byte).cast(), 1) };
    }
    Errno::set_raw(saved);
}

/// A worker's SIGINT, SIGQUIT and SIGABRT: leave at once.
extern "C" fn exit_now(signal: c_int) {
    let code = if signal == Signal::SIGABRT as c_int {
        EXIT_ABORTED
    } else {
        EXIT_STOPPED
    };
    // SAFETY: `_exit` is async-signal-safe and runs no destructors or exit handlers.
    unsafe { nix::libc::_exit(code) }
}

/// Sets `handler` for `signal`, with `SA_RESTART`; returns the previous action.
fn set(signal: Signal, handler: SigHandler) -> io::Result<SigAction> {
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers of this module are async-signal-safe (they load an atomic, then
    // `write(2)` or `_exit`); `SigDfl` and `SigIgn` run no code.
    unsafe { sigaction(signal, &action) }.map_err(io::Error::from)
}

/// A non-blocking, close-on-exec pipe: its reading and writing ends.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)
}

/// The supervisor's handlers, installed for as long as it runs; dropping puts back the
/// dispositions in place before.
#[derive(Debug)]
pub(super) struct SupervisorSignals {
    reader: OwnedFd,
    writer: RawFd,
    previous: Vec<(Signal, SigAction)>,
}

impl SupervisorSignals {
    /// Installs the handlers of [`SUPERVISOR_SIGNALS`].
    pub(super) fn install() -> io::Result<SupervisorSignals> {
        let (reader, writer) = pipe()?;
        let writer = writer.into_raw_fd();
        PIPE.store(writer, Ordering::SeqCst);
        let mut signals = SupervisorSignals {
            reader,
            writer,
            previous: Vec::new(),
        };
        for signal in SUPERVISOR_SIGNALS {
            // On failure, dropping `signals` restores those already set.
            let previous = set(signal, SigHandler::Handler(to_pipe))?;
            signals.previous.push((signal, previous));
        }
        Ok(signals)
    }

    /// The pipe to `poll(2)`.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }

    /// The descriptors a worker closes after `fork`.
    pub(super) fn fds(&self) -> [RawFd; 2] {
        [self.reader.as_raw_fd(), self.writer]
    }

    /// The signals received since the last call, in order.
    pub(super) fn take(&self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        let mut heard = Vec::new();
        loop {
            match nix::unistd::read(self.reader.as_raw_fd(), &mut buf) {
                Ok(0) => return heard,
                Ok(n) => heard.extend(
                    buf.iter()
                        .take(n)
                        .filter_map(|&b| Signal::try_from(i32::from(b)).ok()),
                ),
                Err(Errno::EINTR) => {}
                Err(_) => return heard,
            }
        }
    }
}

impl Drop for SupervisorSignals {
    fn drop(&mut self) {
        for (signal, previous) in self.previous.drain(..) {
            // SAFETY: `previous` is the action the system reported as installed before ours.
            if let Err(e) = unsafe { sigaction(signal, &previous) } {
                log::error!(target: "socketserver::prefork", "restoring the {signal} disposition: {e}");
            }
        }
        PIPE.store(-1, Ordering::SeqCst);
        // The writing end stays open: a handler on another thread may have loaded its number
        // just before the store above, and must not write to a file that took its number.
        // One descriptor per `serve`.
    }
}

/// Blocks every signal on this thread; returns the mask to restore.
pub(super) fn block_all() -> io::Result<SigSet> {
    SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_SETMASK)
        .map_err(io::Error::from)
}

/// Puts back the mask [`block_all`] returned.
pub(super) fn restore_mask(mask: &SigSet) {
    if let Err(e) = mask.thread_set_mask() {
        log::error!(target: "socketserver::prefork", "restoring the signal mask: {e}");
    }
}

/// In a worker, right after `fork` (every signal blocked): the supervisor's handlers go, and
/// the worker's come: SIGTERM is written to the returned pipe (a graceful stop), SIGINT and
/// SIGQUIT `_exit` at once, SIGABRT (the supervisor's heartbeat timeout) too, with its own
/// code; SIGHUP, SIGTTIN, SIGTTOU and SIGUSR2 are ignored (they are for the supervisor, and
/// reach the workers too when sent to the process group). Then every signal is unblocked.
///
/// `close` are the supervisor's pipe descriptors, which the worker must not hold.
pub(super) fn worker_signals(close: [RawFd; 2]) -> io::Result<OwnedFd> {
    for fd in close {
        let _ = nix::unistd::close(fd);
    }
    let (reader, writer) = pipe()?;
    PIPE.store(writer.into_raw_fd(), Ordering::SeqCst);
    for signal in SUPERVISOR_SIGNALS {
        let handler = match signal {
            Signal::SIGTERM => SigHandler::Handler(to_pipe),
            Signal::SIGINT | Signal::SIGQUIT => SigHandler::Handler(exit_now),
            Signal::SIGHUP | Signal::SIGTTIN | Signal::SIGTTOU | Signal::SIGUSR2 => {
                SigHandler::SigIgn
            }
            _ => SigHandler::SigDfl,
        };
        set(signal, handler)?;
    }
    set(Signal::SIGABRT, SigHandler::Handler(exit_now))?;
    SigSet::empty().thread_set_mask().map_err(io::Error::from)?;
    Ok(reader)
}

/// Reads the signals waiting on a worker's pipe; whether SIGTERM was among them.
pub(super) fn heard_term(reader: &OwnedFd) -> bool {
    let mut buf = [0u8; 16];
    let mut term = false;
    loop {
        match nix::unistd::read(reader.as_raw_fd(), &mut buf) {
            Ok(0) => return term,
            Ok(n) => term |= buf.iter().take(n).any(|&b| b == Signal::SIGTERM as u8),
            Err(Errno::EINTR) => {}
            Err(_) => return term,
        }
    }
}
