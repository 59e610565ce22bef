//! What [`Prefork::serve`](super::Prefork::serve) can fail with.

use std::fmt;
use std::io;

/// Errors from running a [`Prefork`](super::Prefork) supervisor.
///
/// Like [`Error`](crate::Error), its `Debug` form is the message followed by its causes, so
/// that `fn main() -> Result<(), PreforkError>` ends with a readable line.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum PreforkError {
    /// A worker's set-up failed (its
    /// [`on_worker_start`](super::Prefork::on_worker_start) returned an error or panicked):
    /// the supervisor stopped the whole server instead of respawning workers that cannot
    /// start (gunicorn's `WORKER_BOOT_ERROR`).
    #[error("worker {worker} (pid {pid}) failed to start: {message}")]
    WorkerBoot {
        /// The worker's number.
        worker: u64,
        /// Its process id.
        pid: u32,
        /// What its set-up said.
        message: String,
    },
    /// An option has a value the supervisor cannot use.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The method's name.
        option: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The metrics listener of `Prefork::metrics` cannot be bound.
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        /// The address asked for.
        address: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// Installing the supervisor's signal handlers failed.
    #[error("cannot install the supervisor's signal handlers: {source}")]
    Signal {
        /// The operating system's error.
        source: io::Error,
    },
    /// Waiting for signals and heartbeats failed (`poll(2)` failed); the workers were stopped.
    #[error("the supervisor cannot wait for its workers: {source}")]
    Supervise {
        /// The operating system's error.
        source: io::Error,
    },
}

impl fmt::Debug for PreforkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        if source.is_some() {
            write!(f, "\n\nCaused by:")?;
        }
        while let Some(cause) = source {
            write!(f, "\n    {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
