//! The system calls the rest of the crate shares, in one place (as socket2 keeps
//! `sys/unix.rs`): sleeping in `poll(2)` until a deadline, the wake-up pair ([`wake`]), the
//! signal dispositions and the self-pipe every signal is heard through ([`signal`]), `fork`,
//! `_exit` and inherited descriptors ([`process`]), and socket-level calls ([`socket`]).
//! Linux only.
//!
//! Every `unsafe` block of the crate is in this module, each with the reason it is sound; the
//! functions that wrap `fork` and inherited descriptors state what their (crate-internal)
//! callers guarantee. Not here: binding and adopting sockets (`transport/`, through
//! `socket2`), and `waitpid` on our own pids (safe, beside the code that forked them).

pub(crate) mod process;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod wake;

use std::io;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollTimeout};

/// The instant `duration` from now; for durations too long to add to now (such as
/// `Duration::MAX`, "wait however long it takes"), a deadline a century away, which never comes.
pub(crate) fn deadline_in(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The `poll(2)` (or `epoll_wait(2)`) timeout that ends at `deadline` (`None`: wait forever),
/// rounded up to whole milliseconds so that a wait never ends just before its deadline and
/// spins.
pub(crate) fn poll_timeout_until(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d
                .saturating_duration_since(Instant::now())
                .as_nanos()
                .div_ceil(1_000_000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Sleeps in `poll(2)` until one of `fds` is ready or `deadline` passes (`None`: no
/// deadline). Interrupted sleeps (`EINTR`) go on with the time that is left. Returns how many
/// descriptors are ready: 0 means the deadline passed; read each one's `revents`.
///
/// # Errors
///
/// What `poll(2)` fails with, other than `EINTR`.
pub(crate) fn sleep_until(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        match poll(fds, poll_timeout_until(deadline)) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(0) if deadline.is_some_and(|d| Instant::now() < d) => continue,
            Ok(n) => return Ok(usize::try_from(n).unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::PollFlags;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn sleeps_until_the_deadline_and_never_ends_early() {
        let (a, _b) = UnixStream::pair().unwrap();
        let deadline = Instant::now() + Duration::from_millis(30);
        let mut fds = [PollFd::new(a.as_fd(), PollFlags::POLLIN)];
        assert_eq!(sleep_until(&mut fds, Some(deadline)).unwrap(), 0);
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn wakes_when_a_descriptor_is_ready() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"x").unwrap();
        let mut fds = [PollFd::new(a.as_fd(), PollFlags::POLLIN)];
        assert_eq!(sleep_until(&mut fds, None).unwrap(), 1);
    }
}
