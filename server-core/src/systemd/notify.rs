//! Telling the service manager how the service is doing (`sd_notify(3)`), through the
//! `sd-notify` crate. Every function is a no-op returning `Ok` when `NOTIFY_SOCKET` is unset.

use std::env;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use sd_notify::NotifyState;

/// A notification that could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot send {message:?} to the service manager at NOTIFY_SOCKET={socket}: {source}")]
#[non_exhaustive]
pub struct NotifyError {
    /// What was to be sent, such as `"READY=1\n"`.
    pub message: String,
    /// `NOTIFY_SOCKET`.
    pub socket: String,
    /// The error of `sendto(2)` (or of reading the monotonic clock).
    pub source: io::Error,
}

/// Sends `states` as one datagram to `NOTIFY_SOCKET`, if it is set.
///
/// A socket path goes through `sd_notify::notify`; an abstract one (`@name`, which
/// systemd uses in containers and which sd-notify 0.5 does not read) is sent to here.
fn send(states: &[NotifyState<'_>]) -> Result<(), NotifyError> {
    let Some(socket) = env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    log::trace!(target: "socketserver::systemd", "sd_notify {message:?}");
    let sent = match socket.as_bytes().split_first() {
        Some((b'@', name)) => send_abstract(name, &message),
        _ => sd_notify::notify(states),
    };
    sent.map_err(|source| NotifyError {
        message,
        socket: socket.to_string_lossy().into_owned(),
        source,
    })
}

fn send_abstract(name: &[u8], message: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    UnixDatagram::unbound()?
        .send_to_addr(message.as_bytes(), &addr)
        .map(drop)
}

/// `READY=1`: start-up is finished (for `Type=notify` units, systemd starts the units that
/// wait for this one only now). Send it once the server serves.
///
/// # Errors
///
/// [`NotifyError`] if the datagram cannot be sent.
pub fn notify_ready() -> Result<(), NotifyError> {
    send(&[NotifyState::Ready])
}

/// `STATUS=...`: a line for `systemctl status`, such as the live figures. Newlines become
/// spaces (a newline would start another assignment).
///
/// # Errors
///
/// [`NotifyError`] if the datagram cannot be sent.
pub fn notify_status(status: &str) -> Result<(), NotifyError> {
    let line = status.replace(['\n', '\r'], " ");
    send(&[NotifyState::Status(&line)])
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (the clock reading systemd 253 and later need for
/// `Type=notify-reload`): a reload starts. Send [`notify_ready`] when it is over.
///
/// # Errors
///
/// [`NotifyError`] if the datagram cannot be sent or the clock cannot be read.
pub fn notify_reloading() -> Result<(), NotifyError> {
    if env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(());
    }
    let now = NotifyState::monotonic_usec_now().map_err(|source| NotifyError {
        message: "RELOADING=1\n".into(),
        socket: env::var("NOTIFY_SOCKET").unwrap_or_default(),
        source,
    })?;
    send(&[NotifyState::Reloading, now])
}

/// `STOPPING=1`: the service is stopping (the drain has started).
///
/// # Errors
///
/// [`NotifyError`] if the datagram cannot be sent.
pub fn notify_stopping() -> Result<(), NotifyError> {
    send(&[NotifyState::Stopping])
}

/// `MAINPID=pid`: the service's main process is now `pid` (after a binary upgrade hands the
/// sockets to a new process). systemd accepts it from the current main process.
///
/// # Errors
///
/// [`NotifyError`] if the datagram cannot be sent.
pub fn notify_main_pid(pid: u32) -> Result<(), NotifyError> {
    send(&[NotifyState::MainPid(pid)])
}

/// `WATCHDOG=1`: the service is alive. With `WatchdogSec=` set, send it at least every
/// [`watchdog_interval`], or systemd kills the service (half the interval is the usual pace).
///
/// # Errors
///
/// [`NotifyError`] if the datagram cannot be sent.
pub fn notify_watchdog() -> Result<(), NotifyError> {
    send(&[NotifyState::Watchdog])
}

/// The watchdog interval (`WATCHDOG_USEC`), if systemd expects [`notify_watchdog`] from this
/// process (`WATCHDOG_PID` unset or this process's id).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}
