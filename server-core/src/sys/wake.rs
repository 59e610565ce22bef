//! A wake-up signal for a `poll(2)` loop: one end of a non-blocking Unix socket pair.
//!
//! Any thread or a forked child (which shares the pair) writes a byte; the loop sleeps in
//! `poll(2)` on the receiving end and drains it. The serving loop's shutdown waker, the
//! connection cap and the pool's "a worker is free" signal all use it.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

/// Creates a connected, non-blocking pair: the sending and the receiving end.
pub(crate) fn pair() -> io::Result<(Notify, Wait)> {
    let (rx, tx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    tx.set_nonblocking(true)?;
    Ok((Notify(tx), Wait(rx)))
}

/// Reads every byte waiting on the non-blocking `receiver`; `true` if there was any.
pub(crate) fn drain(receiver: &UnixStream) -> bool {
    let mut buf = [0u8; 64];
    let mut any = false;
    loop {
        match (&*receiver).read(&mut buf) {
            Ok(0) => return any,
            Ok(_) => any = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return any,
        }
    }
}

/// The sending end.
#[derive(Debug)]
pub(crate) struct Notify(UnixStream);

impl Notify {
    /// Wakes the receiving end. Never blocks: a full socket buffer means a wake-up is pending
    /// already.
    pub(crate) fn notify(&self) {
        let _ = (&self.0).write(&[1]);
    }
}

/// The receiving end.
#[derive(Debug)]
pub(crate) struct Wait(UnixStream);

impl Wait {
    /// Reads every pending wake-up byte; `true` if there was any.
    pub(crate) fn drain(&self) -> bool {
        drain(&self.0)
    }

    /// The descriptor to `poll(2)` for readability.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
