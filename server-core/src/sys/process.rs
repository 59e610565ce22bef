//! Processes: `fork` with the child's code as a closure, leaving a process at once
//! ([`exit_now`]), and taking ownership of descriptors a process inherited at `exec`
//! ([`own_inherited`], for `LISTEN_FDS`).
//!
//! The `unsafe` of the process model lives here; what makes each call sound is stated on the
//! function (a contract for the crate's own callers: these functions are not public).

use std::cell::Cell;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

use super::signal::{set_disposition, Disposition};

/// The status a forked child leaves with if its code panics (Rust's own for a panic).
pub(crate) const EXIT_PANICKED: i32 = 101;

/// Forks the process. In the child, runs `child`, which must never return (it leaves through
/// [`exit_now`]; a panic in it leaves with [`EXIT_PANICKED`], never unwinding into the
/// caller's frames, which are the parent's); in the parent, returns the child's pid.
///
/// # Contract
///
/// `fork` copies only the calling thread, and a lock another thread held at that moment stays
/// locked for ever in the child. So the caller guarantees one of:
///
/// - the process is single-threaded at the fork (the prefork supervisor, by its documented
///   fork rules), so the child may do anything; or
/// - the child only does what stays usable in the child of a multi-threaded process: what
///   `Forking`'s "Safety and threads" section lists (async-signal-safe calls, and glibc's
///   `malloc`, whose locks glibc resets in the child), and takes no lock another thread may
///   hold.
///
/// In both cases the caller holds no lock of this crate across the call.
///
/// # Errors
///
/// What `fork(2)` fails with (`EAGAIN`: too many processes; `ENOMEM`).
pub(crate) fn fork(child: impl FnOnce() -> std::convert::Infallible) -> io::Result<Pid> {
    // SAFETY: the caller upholds the contract above (one thread, or a child that keeps to
    // what is safe after a fork in a multi-threaded process); the child runs `child` and
    // leaves through `_exit`, never returning into the parent's frames.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let outcome = catch_unwind(AssertUnwindSafe(child));
            match outcome {
                Ok(never) => match never {},
                Err(_) => exit_now(EXIT_PANICKED),
            }
        }
        Ok(ForkResult::Parent { child }) => Ok(child),
        Err(errno) => Err(errno.into()),
    }
}

thread_local! {
    /// Whether this thread is the only thread of a child that `Forking` made to serve one
    /// request (see [`mark_request_child`]).
    static REQUEST_CHILD: Cell<bool> = const { Cell::new(false) };
}

/// In a child forked to serve one request: marks it so, for [`is_request_child`]. Its
/// bookkeeping for the server (the connection registry, request durations) is then skipped:
/// the child's copy of it is never read, and dies with the child, while keeping it costs
/// every child copy-on-write faults and the first clock read of a new process.
pub(crate) fn mark_request_child() {
    REQUEST_CHILD.set(true);
}

/// Whether this thread serves a request in a child forked for it (see
/// [`mark_request_child`]); `false` in the server's own process and in threads a handler
/// starts.
pub(crate) fn is_request_child() -> bool {
    REQUEST_CHILD.get()
}

/// In a forked child: closes `fd`, the child's copy of a descriptor that an object of the
/// parent's owns (the listening socket). That object is never dropped in the child, which
/// leaves through [`exit_now`], so the number is closed once. Calls `close(2)` directly, code
/// every child has already run, rather than a wrapper elsewhere in the program's text: each
/// page of code a child runs for the first time costs it a page fault.
#[inline]
pub(crate) fn close_in_child(fd: RawFd) {
    // SAFETY: `close` takes any number; the caller owns this copy of `fd` and never uses it
    // again (see above).
    let _ = unsafe { nix::libc::close(fd) };
}

/// Gives the free memory inside the heap back to the system (glibc's `malloc_trim(0)`): free
/// chunks are merged, the whole pages among them released and the top of the heap cut back,
/// so they are no longer part of the process. A process about to `fork` many times calls it
/// first: every page it holds is one more page-table entry each `fork` copies, and every free
/// chunk malloc has yet to sort (those in its fast bins, and those merging leaves in its
/// unsorted list) is sorted by the first allocation of a larger size in each child, a
/// copy-on-write fault for each page such chunks are on. So the parent sorts them here, once.
/// A no-op with other C libraries.
pub(crate) fn trim_heap() {
    /// An allocation larger than what a small heap has free (so malloc sorts every free chunk
    /// looking for one), and smaller than its threshold for `mmap` (so it looks).
    const SORTING: usize = 64 * 1024;
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` takes no pointer and only works on malloc's own state, under its
    // locks; it may be called at any time, from any thread. The block `malloc` returns (or
    // null) goes straight back to `free`, never read or written.
    unsafe {
        nix::libc::malloc_trim(0);
        // Freed, the block goes back to the top of the heap, which malloc cuts back again.
        nix::libc::free(nix::libc::malloc(SORTING));
    }
}

/// Leaves the process at once with `code`: no destructors, no exit handlers, no flushing of
/// buffers (in a forked child they are copies of the parent's). Async-signal-safe.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit(2)` takes any status, is async-signal-safe and does not return.
    unsafe { nix::libc::_exit(code) }
}

/// In a forked child: `signals` go back to their default action, so that a signal meant for
/// the parent's handlers (which would write to the parent's sockets) ends the child instead.
/// Takes no lock: fine in the child of a multi-threaded process.
pub(crate) fn default_signals_in_child(signals: &[Signal]) {
    for &signal in signals {
        let _ = set_disposition(signal, Disposition::Default);
    }
}

/// Takes ownership of descriptor `fd`, which this process inherited at `exec` and which a
/// protocol names as its own (systemd's `LISTEN_FDS`, our upgrade's pipe).
///
/// # Contract
///
/// `fd` is open, and nothing else in this process owns it or will close it: the caller takes
/// each number once (for `LISTEN_FDS`, under the lock that removes the variables).
pub(crate) fn own_inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: by the contract above, `fd` is open and owned by nobody else in this process,
    // so the `OwnedFd` is its only owner and closes it once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
