//! Signals in the process model, over the crate's one self-pipe mechanism
//! ([`sys::signal`](crate::sys::signal)): the supervisor hears its eight signals on a
//! [`Watch`] it polls with its workers' heartbeats; a worker, set up in the child right after
//! `fork`, hears SIGTERM on a watch of its own and leaves at once on SIGINT, SIGQUIT and
//! SIGABRT.
//!
//! Every signal is blocked across `fork`, so a signal that arrives in between cannot run the
//! supervisor's handler in the child (which would write to the supervisor's socket). The child
//! puts back the dispositions from before the supervisor's, sets its own, then unblocks.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

use super::worker::{EXIT_ABORTED, EXIT_STOPPED};
use crate::signals::Watch;
use crate::sys::signal::{self, Disposition};

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

/// A non-blocking, close-on-exec pipe: its reading and writing ends.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)
}

/// The supervisor's signals, heard for as long as it runs; dropping the watch puts back the
/// dispositions in place before.
pub(super) fn supervisor_signals() -> io::Result<Watch> {
    Watch::hearing(&SUPERVISOR_SIGNALS).map(|(watch, _quit)| watch)
}

/// In a worker, right after `fork` (every signal blocked): the supervisor's handlers go, and
/// the worker's come: SIGTERM is heard on the returned watch (a graceful stop), SIGINT and
/// SIGQUIT `_exit` at once, SIGABRT (the supervisor's heartbeat timeout) too, with its own
/// code; SIGHUP, SIGTTIN, SIGTTOU and SIGUSR2 are ignored (they are for the supervisor, and
/// reach the workers too when sent to the process group). Then every signal is unblocked.
pub(super) fn worker_signals() -> io::Result<Watch> {
    signal::forget_in_child();
    let (term, _quit) = Watch::hearing(&[Signal::SIGTERM])?;
    for (sig, disposition) in [
        (Signal::SIGINT, Disposition::Exit(EXIT_STOPPED)),
        (Signal::SIGQUIT, Disposition::Exit(EXIT_STOPPED)),
        (Signal::SIGABRT, Disposition::Exit(EXIT_ABORTED)),
        (Signal::SIGHUP, Disposition::Ignore),
        (Signal::SIGTTIN, Disposition::Ignore),
        (Signal::SIGTTOU, Disposition::Ignore),
        (Signal::SIGUSR2, Disposition::Ignore),
        (Signal::SIGCHLD, Disposition::Default),
    ] {
        signal::set_disposition(sig, disposition)?;
    }
    signal::unblock_all()?;
    Ok(term)
}
