//! Signal dispositions, in one place: the self-pipe handler every part of the crate hears
//! signals through, the handler that leaves the process at once, and the blocking of signals
//! across `fork`.
//!
//! # The self-pipe
//!
//! A *listener* ([`listen`]) names the signals it hears and gets the receiving end of a socket
//! pair of its own; the handler only writes the signal's number to the sending end of every
//! listener that hears it (one `write(2)`, async-signal-safe). A signal's handler is installed
//! when its first listener starts, and the disposition in place before is put back after its
//! last listener stops, so afterwards Ctrl-C does what it did before (`signal-hook`'s
//! `unregister` leaves its own handler in place, which swallowed the signals for the rest of
//! the process). [`serve_until_signal`](crate::Server::serve_until_signal) listens for SIGINT
//! and SIGTERM; the prefork supervisor for its eight signals, and each worker for SIGTERM.
//!
//! # In a forked child
//!
//! A child inherits the parent's handlers and listeners' sockets. [`forget_in_child`] (for a
//! child that goes on to listen itself, such as a prefork worker; it takes this module's lock,
//! so the parent must have been single-threaded at the fork) puts back the dispositions from
//! before the first listener and closes the child's copies of the sockets;
//! [`set_disposition`] with [`Disposition::Default`] (no lock: fine in the child of a
//! multi-threaded process) is enough for a child that only runs a request.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::libc::c_int;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use parking_lot::Mutex;

use super::{process, wake};

/// Most listeners at once (servers of one process serving until a signal at the same time,
/// and a prefork supervisor).
const MAX_LISTENERS: usize = 16;

/// Signal numbers run from 1 to 64 on Linux; index 0 is unused.
const SIGNALS: usize = 65;

/// The sending ends of the listeners' sockets, -1 where free. Read by the signal handler.
static SENDERS: [AtomicI32; MAX_LISTENERS] = [const { AtomicI32::new(-1) }; MAX_LISTENERS];

/// Which signals each listener hears: bit `n - 1` for signal `n`. Read by the signal handler.
static HEARS: [AtomicU64; MAX_LISTENERS] = [const { AtomicU64::new(0) }; MAX_LISTENERS];

/// The status [`exit_handler`] leaves with, per signal.
static EXIT_CODES: [AtomicI32; SIGNALS] = [const { AtomicI32::new(0) }; SIGNALS];

/// The dispositions in place before each signal's first listener, restored after its last,
/// and each slot's socket pair.
///
/// A slot's pair is made once and kept for the life of the process: the handler may be about
/// to write to a sender on another thread just as its listener stops, so a sender is never
/// closed (its number could be reused for another file). A listener takes the slot's receiver
/// while it runs and gives it back.
static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    listeners: [0; SIGNALS],
    previous: [None; SIGNALS],
    pairs: [const { None }; MAX_LISTENERS],
    taken: [-1; MAX_LISTENERS],
});

#[derive(Debug)]
struct Installed {
    /// Per signal: how many listeners hear it.
    listeners: [usize; SIGNALS],
    /// Per signal: the disposition before its first listener.
    previous: [Option<SigAction>; SIGNALS],
    /// Per slot: the sender (kept forever), and the receiver while no listener holds it.
    pairs: [Option<(UnixStream, Option<UnixStream>)>; MAX_LISTENERS],
    /// Per slot: the receiver's descriptor while a listener holds it, else -1 (closed by
    /// [`forget_in_child`], where the listener's copy is never dropped).
    taken: [RawFd; MAX_LISTENERS],
}

/// The index of `signal` in the tables.
fn index(signal: Signal) -> usize {
    usize::try_from(signal as c_int)
        .unwrap_or(0)
        .min(SIGNALS - 1)
}

/// The bit of `signal` in [`HEARS`].
fn bit(signal: Signal) -> u64 {
    let n = index(signal);
    if n == 0 {
        0
    } else {
        1 << (n - 1)
    }
}

extern "C" fn to_listeners(signal: c_int) {
    let saved = Errno::last_raw();
    let byte = u8::try_from(signal).unwrap_or(u8::MAX);
    let bit = match u32::try_from(signal) {
        Ok(n @ 1..=64) => 1u64 << (n - 1),
        _ => 0,
    };
    for (sender, hears) in SENDERS.iter().zip(&HEARS) {
        let fd = sender.load(Ordering::SeqCst);
        if fd >= 0 && hears.load(Ordering::SeqCst) & bit != 0 {
            // SAFETY: `write(2)` is async-signal-safe; `fd` is a socket this module keeps open
            // for the life of the process (see `INSTALLED`), and `byte` outlives the call. The
            // socket is non-blocking, so a full buffer (a signal already pending) cannot block
            // here.
            let _ = unsafe { nix::libc::write(fd, std::ptr::addr_of!(byte).cast(), 1) };
        }
    }
    Errno::set_raw(saved);
}

/// Leaves the process at once with the signal's status in [`EXIT_CODES`].
extern "C" fn exit_handler(signal: c_int) {
    let code = usize::try_from(signal)
        .ok()
        .and_then(|n| EXIT_CODES.get(n))
        .map_or(1, |c| c.load(Ordering::SeqCst));
    process::exit_now(code)
}

/// Sets `handler` for `signal`, with `SA_RESTART`; returns the previous action.
fn install(signal: Signal, handler: SigHandler) -> io::Result<SigAction> {
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers of this module are async-signal-safe (`to_listeners` loads atomics
    // and calls `write(2)`, `exit_handler` loads an atomic and calls `_exit`); `SigDfl` and
    // `SigIgn` run no code. `sigaction` itself is async-signal-safe, so this is sound in the
    // child of a multi-threaded process too.
    unsafe { sigaction(signal, &action) }.map_err(io::Error::from)
}

/// Puts `previous` back for `signal`.
fn put_back(signal: Signal, previous: &SigAction) {
    // SAFETY: `previous` is the action the system reported as installed before ours, so
    // putting it back restores the program's own choice (default, ignore, or its handler).
    if let Err(e) = unsafe { sigaction(signal, previous) } {
        log::error!(target: "socketserver::server", "restoring the {signal} disposition: {e}");
    }
}

/// What a signal does, for [`set_disposition`] (outside the listeners' self-pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// The system's default action (`SIG_DFL`).
    Default,
    /// Nothing (`SIG_IGN`).
    Ignore,
    /// Leave the process at once (`_exit`) with this status: no destructors, no exit handlers.
    Exit(i32),
}

/// Sets what `signal` does, outside the listeners' bookkeeping: for a forked child (see the
/// module docs). Takes no lock.
pub(crate) fn set_disposition(signal: Signal, disposition: Disposition) -> io::Result<()> {
    let handler = match disposition {
        Disposition::Default => SigHandler::SigDfl,
        Disposition::Ignore => SigHandler::SigIgn,
        Disposition::Exit(code) => {
            if let Some(c) = EXIT_CODES.get(index(signal)) {
                c.store(code, Ordering::SeqCst);
            }
            SigHandler::Handler(exit_handler)
        }
    };
    install(signal, handler).map(drop)
}

/// One listener's place: its slot, the receiving end on which the signals' numbers arrive,
/// and a clone of the sending end, for writing to the receiver from another thread.
#[derive(Debug)]
pub(crate) struct Listening {
    pub(crate) slot: usize,
    pub(crate) receiver: UnixStream,
    pub(crate) sender: UnixStream,
}

/// Starts writing the numbers of `signals` to a socket of a free slot, until
/// [`stop_listening`]; installs the handler of each signal that had no listener yet.
pub(crate) fn listen(signals: &[Signal]) -> io::Result<Listening> {
    let mut installed = INSTALLED.lock();
    let slot = SENDERS
        .iter()
        .position(|s| s.load(Ordering::SeqCst) < 0)
        .ok_or_else(|| io::Error::other("too many listeners wait for a signal at once"))?;
    let pair = installed
        .pairs
        .get_mut(slot)
        .ok_or_else(|| io::Error::other("no such signal slot"))?;
    if pair.is_none() {
        let (receiver, sender) = UnixStream::pair()?;
        sender.set_nonblocking(true)?;
        receiver.set_nonblocking(true)?;
        *pair = Some((sender, Some(receiver)));
    }
    let Some((sender, receiver)) = pair.as_mut() else {
        return Err(io::Error::other("no such signal slot"));
    };
    let sender_clone = sender.try_clone()?;
    let sender_fd = sender.as_raw_fd();
    let receiver = receiver
        .take()
        .ok_or_else(|| io::Error::other("signal slot in use"))?;
    // Bytes left from an earlier listener on this slot.
    wake::drain(&receiver);
    let mut added = Vec::new();
    for &signal in signals {
        let n = index(signal);
        if installed.listeners[n] == 0 {
            match install(signal, SigHandler::Handler(to_listeners)) {
                Ok(previous) => installed.previous[n] = Some(previous),
                Err(e) => {
                    for done in added {
                        release(&mut installed, done);
                    }
                    if let Some(Some((_, slot_receiver))) = installed.pairs.get_mut(slot) {
                        *slot_receiver = Some(receiver);
                    }
                    return Err(e);
                }
            }
        }
        installed.listeners[n] += 1;
        added.push(signal);
    }
    let hears = signals.iter().fold(0, |mask, &s| mask | bit(s));
    if let (Some(h), Some(s), Some(t)) = (
        HEARS.get(slot),
        SENDERS.get(slot),
        installed.taken.get_mut(slot),
    ) {
        h.store(hears, Ordering::SeqCst);
        s.store(sender_fd, Ordering::SeqCst);
        *t = receiver.as_raw_fd();
    }
    Ok(Listening {
        slot,
        receiver,
        sender: sender_clone,
    })
}

/// One listener fewer for `signal`: the last one puts the previous disposition back.
fn release(installed: &mut Installed, signal: Signal) {
    let n = index(signal);
    installed.listeners[n] = installed.listeners[n].saturating_sub(1);
    if installed.listeners[n] == 0 {
        if let Some(previous) = installed.previous[n].take() {
            put_back(signal, &previous);
        }
    }
}

/// Stops writing to `slot`'s socket and gives its receiver back; the last listener of each of
/// its signals puts the previous disposition back.
pub(crate) fn stop_listening(slot: usize, receiver: UnixStream) {
    let mut installed = INSTALLED.lock();
    let hears = HEARS.get(slot).map_or(0, |h| h.swap(0, Ordering::SeqCst));
    if let Some(s) = SENDERS.get(slot) {
        s.store(-1, Ordering::SeqCst);
    }
    if let Some(t) = installed.taken.get_mut(slot) {
        *t = -1;
    }
    if let Some(Some((_, slot_receiver))) = installed.pairs.get_mut(slot) {
        *slot_receiver = Some(receiver);
    }
    for signal in Signal::iterator().filter(|&s| hears & bit(s) != 0) {
        release(&mut installed, signal);
    }
}

/// In a child forked from a single-threaded process, with every signal blocked: puts back
/// the dispositions from before the first listener, and closes the child's copies of every
/// listener's socket (the parent's listeners are not the child's). The child may then
/// [`listen`] itself.
pub(crate) fn forget_in_child() {
    let mut installed = INSTALLED.lock();
    for (sender, hears) in SENDERS.iter().zip(&HEARS) {
        sender.store(-1, Ordering::SeqCst);
        hears.store(0, Ordering::SeqCst);
    }
    for signal in Signal::iterator() {
        let n = index(signal);
        installed.listeners[n] = 0;
        if let Some(previous) = installed.previous[n].take() {
            put_back(signal, &previous);
        }
    }
    for pair in &mut installed.pairs {
        // The child's copies: closing them leaves the parent's open.
        drop(pair.take());
    }
    for fd in &mut installed.taken {
        if *fd >= 0 {
            // The listener that holds this receiver lives on in the child's copy of the
            // parent's memory but is never dropped there (the child leaves through `_exit`).
            let _ = nix::unistd::close(*fd);
            *fd = -1;
        }
    }
}

/// Blocks every signal on this thread; returns the mask to restore (across `fork`, so that
/// no handler of the parent runs in the child before it has set its own).
pub(crate) fn block_all() -> io::Result<SigSet> {
    SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_SETMASK)
        .map_err(io::Error::from)
}

/// Puts back the mask [`block_all`] returned.
pub(crate) fn restore_mask(mask: &SigSet) {
    if let Err(e) = mask.thread_set_mask() {
        log::error!(target: "socketserver::server", "restoring the signal mask: {e}");
    }
}

/// Unblocks every signal on this thread.
pub(crate) fn unblock_all() -> io::Result<()> {
    SigSet::empty().thread_set_mask().map_err(io::Error::from)
}
