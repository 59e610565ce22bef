//! Signal dispositions for SIGINT and SIGTERM: a handler that writes the signal's number to a
//! socket per listener, installed while anyone listens and put back after the last one.
//!
//! The handler only writes one byte (async-signal-safe). While several listeners are active,
//! each has its own socket and every one of them hears the signal. The previous dispositions
//! are saved when the first listener starts and restored when the last one stops, so
//! afterwards Ctrl-C does what it did before (`signal-hook`'s `unregister` leaves its own
//! handler in place, which swallowed the signals for the rest of the process).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use parking_lot::Mutex;

use super::wake;

/// The signals a listener hears.
const SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

/// Most listeners at once (servers of one process serving until a signal at the same time).
const MAX_LISTENERS: usize = 16;

/// The sending ends of the listeners' sockets, -1 where free. Read by the signal handler.
static SENDERS: [AtomicI32; MAX_LISTENERS] = [const { AtomicI32::new(-1) }; MAX_LISTENERS];

/// The dispositions in place before the first listener, restored after the last, and each
/// slot's socket pair.
///
/// A slot's pair is made once and kept for the life of the process: the handler may be about
/// to write to a sender on another thread just as its listener stops, so a sender is never
/// closed (its number could be reused for another file). A listener takes the slot's receiver
/// while it runs and gives it back.
static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    listeners: 0,
    previous: Vec::new(),
    pairs: [const { None }; MAX_LISTENERS],
});

#[derive(Debug)]
struct Installed {
    listeners: usize,
    previous: Vec<(Signal, SigAction)>,
    /// Per slot: the sender (kept forever), and the receiver while no listener holds it.
    pairs: [Option<(UnixStream, Option<UnixStream>)>; MAX_LISTENERS],
}

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let saved = Errno::last_raw();
    let byte = u8::try_from(signal).unwrap_or(u8::MAX);
    for sender in &SENDERS {
        let fd = sender.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `write(2)` is async-signal-safe; `fd` is a socket this module keeps open
            // for the life of the process (see `INSTALLED`), and `byte` outlives the call. The
            // socket is non-blocking, so a full buffer (a signal already pending) cannot block
            // here.
            let _ = unsafe { nix::libc::write(fd, std::ptr::addr_of!(byte).cast(), 1) };
        }
    }
    Errno::set_raw(saved);
}

/// One listener's place: its slot, the receiving end on which the signals' numbers arrive,
/// and a clone of the sending end, for writing to the receiver from another thread.
#[derive(Debug)]
pub(crate) struct Listening {
    pub(crate) slot: usize,
    pub(crate) receiver: UnixStream,
    pub(crate) sender: UnixStream,
}

/// Installs the handlers (for the first listener) and starts writing SIGINT's and SIGTERM's
/// numbers to a socket of a free slot, until [`stop_listening`].
pub(crate) fn listen() -> io::Result<Listening> {
    let mut installed = INSTALLED.lock();
    let slot = SENDERS
        .iter()
        .position(|s| s.load(Ordering::SeqCst) < 0)
        .ok_or_else(|| io::Error::other("too many servers wait for a signal at once"))?;
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
    if installed.listeners == 0 {
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in SIGNALS {
            // SAFETY: `on_signal` is async-signal-safe (it only loads atomics and calls
            // `write(2)`), and the previous action is kept to be restored.
            match unsafe { sigaction(signal, &action) } {
                Ok(previous) => installed.previous.push((signal, previous)),
                Err(e) => {
                    restore(&mut installed);
                    if let Some(Some((_, slot_receiver))) = installed.pairs.get_mut(slot) {
                        *slot_receiver = Some(receiver);
                    }
                    return Err(e.into());
                }
            }
        }
    }
    installed.listeners += 1;
    if let Some(s) = SENDERS.get(slot) {
        s.store(sender_fd, Ordering::SeqCst);
    }
    Ok(Listening {
        slot,
        receiver,
        sender: sender_clone,
    })
}

/// Stops writing to `slot`'s socket and gives its receiver back; the last listener puts the
/// previous dispositions back.
pub(crate) fn stop_listening(slot: usize, receiver: UnixStream) {
    let mut installed = INSTALLED.lock();
    if let Some(s) = SENDERS.get(slot) {
        s.store(-1, Ordering::SeqCst);
    }
    if let Some(Some((_, slot_receiver))) = installed.pairs.get_mut(slot) {
        *slot_receiver = Some(receiver);
    }
    installed.listeners = installed.listeners.saturating_sub(1);
    if installed.listeners == 0 {
        restore(&mut installed);
    }
}

/// Puts back the dispositions saved in `installed`.
fn restore(installed: &mut Installed) {
    for (signal, previous) in installed.previous.drain(..) {
        // SAFETY: `previous` is the action the system reported as installed before ours,
        // so putting it back restores the program's own choice (default, ignore, or its handler).
        if let Err(e) = unsafe { sigaction(signal, &previous) } {
            log::error!(target: "socketserver::server", "restoring the {signal} disposition: {e}");
        }
    }
}
