//! Hearing signals: a [`Watch`] hears a set of them (SIGINT and SIGTERM for
//! [`Server::serve_until_signal`](crate::Server::serve_until_signal), whose
//! [`watch_signals`], run on a thread of its own, acts on them; the prefork supervisor's and
//! workers' signals for the process model).
//!
//! The handlers themselves, and putting the previous ones back, live in
//! [`sys::signal`](crate::sys::signal): the handler only writes the signal's number to the
//! watch's socket, which the watching thread reads.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use log::Level;
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::Signal;

use crate::addr::Address;
use crate::report::say;
use crate::server::admission::Gate;
use crate::server::connections::Reach;
use crate::shutdown::ShutdownHandle;
use crate::sys::{deadline_in, signal, sleep_until};

/// The byte that tells a watching thread to end (no signal has number 0).
const QUIT: u8 = 0;

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
    /// Installs the handlers (the first watch) and starts hearing SIGINT and SIGTERM.
    pub(crate) fn start() -> io::Result<(Watch, Quit)> {
        Watch::hearing(&[Signal::SIGINT, Signal::SIGTERM])
    }

    /// Starts hearing `signals` (installing their handlers where no watch hears them yet).
    pub(crate) fn hearing(signals: &[Signal]) -> io::Result<(Watch, Quit)> {
        let signal::Listening {
            slot,
            receiver,
            sender,
        } = signal::listen(signals)?;
        let watch = Watch {
            receiver: Some(receiver),
            slot,
        };
        Ok((watch, Quit(sender)))
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
                // The socket is non-blocking: another reader took the byte, or none was there.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The descriptor that is readable while a signal waits, to `poll(2)` with others.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.receiver.as_ref().map(AsFd::as_fd)
    }

    /// The signals that arrived since the last look, in order, without waiting.
    pub(crate) fn take(&mut self) -> Vec<Signal> {
        let mut heard = Vec::new();
        let Some(receiver) = &self.receiver else {
            return heard;
        };
        let mut buf = [0u8; 64];
        loop {
            match (&*receiver).read(&mut buf) {
                Ok(0) => return heard,
                Ok(n) => heard.extend(
                    buf.iter()
                        .take(n)
                        .filter_map(|&b| Signal::try_from(i32::from(b)).ok()),
                ),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return heard,
            }
        }
    }

    /// Stops hearing the signals; the last watch puts the previous dispositions back.
    pub(crate) fn release(&mut self) {
        if let Some(receiver) = self.receiver.take() {
            signal::stop_listening(self.slot, receiver);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.release();
    }
}

/// The two periods of a stop by signal: serving on, not ready (`drain`), then the grace
/// period for running requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delays {
    pub(crate) drain: Duration,
    pub(crate) grace: Duration,
}

/// What the signal watching thread of
/// [`Server::serve_until_signal`](crate::Server::serve_until_signal) does: on the first signal, asks the server to stop and sets the close deadline; at the
/// deadline, shuts down the reading side of every connection still open; on a second signal,
/// shuts every connection down both ways, makes the deadline now, and gives the signals back to
/// their previous handlers.
pub(crate) fn watch_signals(
    watch: &mut Watch,
    handle: &ShutdownHandle,
    address: &Address,
    gate: &Gate,
    Delays { drain, grace }: Delays,
    stop: &parking_lot::Mutex<Option<Instant>>,
) {
    let target = "socketserver::server";
    let first = match watch.wait(None) {
        Ok(Heard::Signal(signal)) => signal,
        Ok(_) => return,
        Err(e) => {
            log::error!(target: target, "{address}: waiting for signals: {e}");
            return;
        }
    };
    if !drain.is_zero() {
        // Not ready, still serving: load balancers see /readyz fail (and HTTP clients get
        // `Connection: close`) and move traffic away before the listener closes.
        handle.start_draining();
        say(
            Level::Info,
            target,
            format_args!(
                "{first} received: {address} is draining: serving {drain:?} more, not ready, \
                 then stopping (send {first} again to stop at once)"
            ),
        );
        match watch.wait(Some(deadline_in(drain))) {
            Ok(Heard::Timeout) => {}
            Ok(Heard::Signal(signal)) => {
                *stop.lock() = Some(Instant::now());
                handle.connections().shutdown(Reach::All);
                handle.shutdown_nowait();
                say(
                    Level::Warn,
                    target,
                    format_args!("{signal} received again: stopping {address} now"),
                );
                watch.release();
                return;
            }
            Ok(Heard::Quit) => return,
            Err(e) => {
                log::error!(target: target, "{address}: waiting for signals: {e}");
                return;
            }
        }
    }
    let deadline = deadline_in(grace);
    *stop.lock() = Some(deadline);
    say(
        Level::Info,
        target,
        format_args!(
            "{first} received: stopping {address}; {} running requests get up to {grace:?} \
             to finish (send {first} again to stop at once)",
            gate.open()
        ),
    );
    handle.shutdown_nowait();
    let mut cut = false;
    loop {
        match watch.wait((!cut).then_some(deadline)) {
            Ok(Heard::Timeout) => {
                let shut = handle.connections().shutdown(Reach::Reads);
                say(
                    Level::Warn,
                    target,
                    format_args!(
                        "{address}: the {grace:?} grace period is over; {shut} connections \
                         still open have their reading side shut down"
                    ),
                );
                cut = true;
            }
            Ok(Heard::Signal(signal)) => {
                *stop.lock() = Some(Instant::now());
                let shut = handle.connections().shutdown(Reach::All);
                say(
                    Level::Warn,
                    target,
                    format_args!(
                        "{signal} received again: stopping {address} now; {shut} connections \
                         shut down"
                    ),
                );
                watch.release();
                return;
            }
            Ok(Heard::Quit) => return,
            Err(e) => {
                log::error!(target: target, "{address}: waiting for signals: {e}");
                return;
            }
        }
    }
}
