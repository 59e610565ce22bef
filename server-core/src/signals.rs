//! SIGINT and SIGTERM for [`Server::serve_until_signal`](crate::Server::serve_until_signal):
//! handlers installed while it serves, and the previous ones put back when it returns.
//!
//! The handler only writes the signal's number to a socket (async-signal-safe); a watching
//! thread reads it and acts. While several servers of one process serve until a signal, each has
//! its own socket and every one of them hears the signal. The previous dispositions are saved
//! when the first watch starts and restored when the last one ends, so after
//! `serve_until_signal` returns, Ctrl-C does what it did before (`signal-hook`'s `unregister`
//! leaves its own handler in place, which swallowed the signals for the rest of the process).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use parking_lot::Mutex;

use crate::sys::sleep_until;

/// The signals a watch hears.
const SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

/// Most watches at once (servers of one process serving until a signal at the same time).
const MAX_WATCHES: usize = 16;

/// The sending ends of the watches' sockets, -1 where free. Read by the signal handler.
static SENDERS: [AtomicI32; MAX_WATCHES] = [const { AtomicI32::new(-1) }; MAX_WATCHES];

/// The dispositions in place before the first watch, restored after the last, and each slot's
/// socket pair.
///
/// A slot's pair is made once and kept for the life of the process: the handler may be about
/// to write to a sender on another thread just as its watch ends, so a sender is never closed
/// (its number could be reused for another file). A watch takes the slot's receiver while it
/// runs and gives it back.
static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    watches: 0,
    previous: Vec::new(),
    pairs: [const { None }; MAX_WATCHES],
});

#[derive(Debug)]
struct Installed {
    watches: usize,
    previous: Vec<(Signal, SigAction)>,
    /// Per slot: the sender (kept forever), and the receiver while no watch holds it.
    pairs: [Option<(UnixStream, Option<UnixStream>)>; MAX_WATCHES],
}

/// The byte that tells a watching thread to end (no signal has number 0).
const QUIT: u8 = 0;

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let saved = Errno::last_raw();
    let byte = u8::try_from(signal).unwrap_or(u8::MAX);
    for sender in &SENDERS {
        let fd = sender.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `write(2)` is async-signal-safe; `fd` is a socket this module keeps open
            // until after it has cleared the slot, and `byte` outlives the call. The socket is
            // non-blocking, so a full buffer (a signal already pending) cannot block here.
            let _ = unsafe { nix::libc::write(fd, std::ptr::addr_of!(byte).cast(), 1) };
        }
    }
    Errno::set_raw(saved);
}

/// What ended a [`Watch::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heard {
    /// This signal arrived.
    Signal(Signal),
    /// [`Quit::quit`] was called.
    Quit,
    /// The deadline passed.
    Timeout,
}

/// Hears SIGINT and SIGTERM until dropped (or [`release`](Self::release)d).
#[derive(Debug)]
pub(crate) struct Watch {
    /// The slot's receiver, given back on release.
    receiver: Option<UnixStream>,
    slot: usize,
}

/// Ends a [`Watch::wait`] from another thread.
#[derive(Debug)]
pub(crate) struct Quit(UnixStream);

impl Quit {
    pub(crate) fn quit(&self) {
        let _ = (&self.0).write(&[QUIT]);
    }
}

impl Watch {
    /// Installs the handlers (the first watch) and starts hearing the signals.
    pub(crate) fn start() -> io::Result<(Watch, Quit)> {
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
            *pair = Some((sender, Some(receiver)));
        }
        let Some((sender, receiver)) = pair.as_mut() else {
            return Err(io::Error::other("no such signal slot"));
        };
        let quit = Quit(sender.try_clone()?);
        let sender_fd = sender.as_raw_fd();
        let receiver = receiver
            .take()
            .ok_or_else(|| io::Error::other("signal slot in use"))?;
        // Bytes left from an earlier watch on this slot.
        drain(&receiver);
        if installed.watches == 0 {
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
        installed.watches += 1;
        if let Some(s) = SENDERS.get(slot) {
            s.store(sender_fd, Ordering::SeqCst);
        }
        let watch = Watch {
            receiver: Some(receiver),
            slot,
        };
        Ok((watch, quit))
    }

    /// Waits for a signal, a quit, or `deadline`.
    pub(crate) fn wait(&mut self, deadline: Option<Instant>) -> io::Result<Heard> {
        let Some(receiver) = &self.receiver else {
            return Ok(Heard::Quit);
        };
        loop {
            let mut fds = [PollFd::new(receiver.as_fd(), PollFlags::POLLIN)];
            if sleep_until(&mut fds, deadline)? == 0 {
                return Ok(Heard::Timeout);
            }
            let mut byte = [0u8];
            match (&*receiver).read(&mut byte) {
                Ok(0) => return Ok(Heard::Quit),
                Ok(_) if byte[0] == QUIT => return Ok(Heard::Quit),
                Ok(_) => {
                    if let Ok(signal) = Signal::try_from(i32::from(byte[0])) {
                        return Ok(Heard::Signal(signal));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops hearing the signals; the last watch puts the previous dispositions back.
    pub(crate) fn release(&mut self) {
        let Some(receiver) = self.receiver.take() else {
            return;
        };
        let mut installed = INSTALLED.lock();
        if let Some(s) = SENDERS.get(self.slot) {
            s.store(-1, Ordering::SeqCst);
        }
        if let Some(Some((_, slot_receiver))) = installed.pairs.get_mut(self.slot) {
            *slot_receiver = Some(receiver);
        }
        installed.watches = installed.watches.saturating_sub(1);
        if installed.watches == 0 {
            restore(&mut installed);
        }
    }
}

/// Reads every byte waiting on `receiver` without blocking.
fn drain(receiver: &UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        let mut fds = [PollFd::new(receiver.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, nix::poll::PollTimeout::ZERO) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        match (&*receiver).read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.release();
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
